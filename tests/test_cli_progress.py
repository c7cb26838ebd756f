"""Progress off a terminal: `sconet cache` / `cache verify` write plain lines to stderr (subprocesses)."""

from __future__ import annotations

import re


def test_cache_and_verify_print_plain_progress_lines(small_cache, small_dataset, sconet_cli):
    n = small_cache.n_frames
    built = sconet_cli("cache", "--poses", small_dataset, "--no-progress")
    assert built.returncode == 0, built.stderr
    assert "reused existing store" in built.stdout
    assert re.search(rf"^rendering: {n:,}/{n:,} \(100 %\)", built.stderr, re.M), built.stderr
    checked = sconet_cli("cache", "verify", small_cache.path)  # not a terminal: plain lines by default
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"^verifying: (\d+)/\1 \(100 %\)", checked.stderr, re.M), checked.stderr

"""Messages under faults (issue 18 case 10): a full disk while saving a checkpoint or building a
cache, a complete store on a read-only mount, ``--out`` naming a file, a ledger row with bad JSON.

A full disk is real: a small tmpfs mounted in a private mount namespace (``unshare -rm``, no
privileges needed where user namespaces are enabled), and a file size limit (``RLIMIT_FSIZE``,
which makes writes fail with EFBIG) everywhere. A read-only mount is a read-only bind mount in
such a namespace.
"""

from __future__ import annotations

import functools
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sconet.cache import open_cache, verify_cache
from sconet.experiments import Ledger

TINY = [
    "--recipe", "demo-cpu", "--device", "cpu", "--no-progress", "--iters", "2",
    "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8", "--set", "data.eval_max_frames=40",
    "--set", "run.eval_iter=2", "--set", "run.save_iter=2", "--set", "run.keep_n=0",
]  # fmt: skip


def _exe() -> str:
    return str(Path(sys.executable).parent / "sconet")


@functools.cache
def _namespaces() -> bool:
    """Whether this machine lets us mount in a private user + mount namespace."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=64k none "$d"'],
        capture_output=True,
    )
    return probe.returncode == 0


def _on_tmpfs(folder: Path, size: str, argv: list[str]) -> subprocess.CompletedProcess:
    """``argv`` run with a fresh ``size`` tmpfs mounted on ``folder`` (seen by that process only)."""
    script = 'mount -t tmpfs -o size="$1" none "$2" && shift 2 && exec "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", size, str(folder), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _read_only(folder: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """``argv`` run with ``folder`` bind-mounted read-only (for that process only)."""
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(folder), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _file_size_limit(limit: int, argv: list[str]) -> subprocess.CompletedProcess:
    """``argv`` run with every file it writes limited to ``limit`` bytes (Python ignores SIGXFSZ,
    so a write beyond the limit fails with EFBIG)."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        list(map(str, argv)), capture_output=True, text=True, timeout=600, preexec_fn=limit_files
    )


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a failed command ends with (progress lines may come before it)."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, proc.stderr
    lines = lines[-1:]
    assert "[Errno" not in lines[0] and "enforce fail" not in lines[0], lines[0]
    return lines[0]


# -- a full disk -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["tmpfs", "file-size-limit"])
def test_disk_full_while_saving_a_checkpoint(fault, small_cache, small_split, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "run"
    ledger = tmp_path / "ledger.sqlite"
    argv = [_exe(), "train", *TINY, "--cache", small_cache.path, "--split", small_split, "--out", out]
    if fault == "tmpfs":
        if not _namespaces():
            pytest.skip("no user namespaces to mount a small tmpfs (the file-size-limit case still runs)")
        proc = _on_tmpfs(disk, "96k", [*argv, "--ledger", ledger])
        reason = "no space left on the device"
    else:
        proc = _file_size_limit(96 * 1024, [*argv, "--ledger", "none"])
        reason = "file too large"
    line = _one_line_error(proc)
    assert f"{out / 'last.pt'}: cannot save the checkpoint ({reason}" in line and "--resume" in line, line
    if fault == "tmpfs":
        (run,) = Ledger(ledger).runs()
        assert run.status == "failed"
        assert reason in Ledger(ledger).run_row(run.id)["error"]
    else:
        assert not (out / "last.pt").exists() and not list(out.glob(".last.pt*"))  # nothing half-written


@pytest.mark.parametrize("fault", ["tmpfs", "file-size-limit"])
def test_disk_full_while_building_a_cache(fault, small_dataset, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    store = disk / "poses.zarr"
    argv = [_exe(), "cache", "--poses", small_dataset, "--out", store]
    if fault == "tmpfs":
        if not _namespaces():
            pytest.skip("no user namespaces to mount a small tmpfs (the file-size-limit case still runs)")
        line = _one_line_error(_on_tmpfs(disk, "64k", argv))
        assert f"{store}: cannot write the cache (no space left on the device" in line, line
    else:
        line = _one_line_error(_file_size_limit(64 * 1024, argv))
        assert f"{store}: cannot write the cache (file too large" in line, line
        assert "resumes where it stopped" in line
        # room again: the same command finishes the build
        again = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert verify_cache(store).ok


def test_complete_store_on_a_read_only_mount_is_reused(store_copy, small_dataset, tmp_path):
    if not _namespaces():
        pytest.skip("no user namespaces here for a read-only bind mount")
    assert not list(tmp_path.glob(".copy.zarr.lock"))  # the lock file cannot be created there
    proc = _read_only(tmp_path, [_exe(), "cache", "--poses", small_dataset, "--out", store_copy])
    assert proc.returncode == 0, proc.stderr
    assert f"reused existing store (same inputs and settings): {store_copy}" in proc.stdout
    # a store that has to be (re)built there fails with one line naming the store and the cause
    other = tmp_path / "other.zarr"
    line = _one_line_error(_read_only(tmp_path, [_exe(), "cache", "--poses", small_dataset, "--out", other]))
    assert f"{other}: cannot write the cache (read-only file system" in line, line
    assert open_cache(store_copy).n_sequences > 0


# -- --out naming a file, a damaged ledger row ---------------------------------------------------


def test_out_naming_a_file(sconet_cli, small_cache, small_split, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    data = ["--cache", small_cache.path, "--split", small_split, "--ledger", "none"]
    for extra in ([], ["--resume"], ["--overwrite"]):
        line = _one_line_error(sconet_cli("train", *TINY, *data, "--out", target, *extra))
        assert f"{target}: --out is a file, not a folder" in line, line
    line = _one_line_error(sconet_cli("train", *TINY, *data, "--out", target / "run"))
    assert f"{target}: --out {target / 'run'}: its parent is a file" in line, line
    assert target.read_text() == "keep me"


def test_ledger_row_with_bad_json(sconet_cli, tmp_path):
    db = tmp_path / "ledger.sqlite"
    ledger = Ledger(db)
    run_id = ledger.start_run(recipe="demo-cpu", iters=4, out=str(tmp_path / "run"))
    ledger.add_run_eval(run_id, 2, {"test_f1": 0.5})
    ledger.end_run(run_id, "finished", 4)
    ok = sconet_cli("runs", "--ledger", db, "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["runs"][0]["best_test_f1"] == 0.5
    with sqlite3.connect(db) as con:
        (row_id,) = con.execute("SELECT id FROM run_evals").fetchone()
        con.execute("UPDATE run_evals SET metrics = ? WHERE id = ?", ("{test_f1: 0.5", row_id))
    for args in (["runs"], ["runs", "show", str(run_id)]):
        line = _one_line_error(sconet_cli(*args, "--ledger", db))
        assert f"{db}: table run_evals, row {row_id}, column metrics is not valid JSON" in line, line
        assert "Expecting property name" in line and "repair or delete that row" in line

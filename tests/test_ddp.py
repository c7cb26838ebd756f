"""Two-process DDP training on CPU (gloo) through torchrun and `python -m sconet.train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch


def test_torchrun_two_ranks(small_cache, small_split, tmp_path, cache_root_dir):
    out = tmp_path / "ddp"
    env = dict(os.environ, SCONET_CACHE=str(cache_root_dir), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sconet.train",
        "--recipe", "demo-cpu", "--cache", str(small_cache.path), "--split", str(small_split),
        "--out", str(out), "--device", "cpu", "--iters", "3", "--no-progress",
        "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8", "--set", "data.eval_max_frames=40",
        "--set", "run.eval_iter=3", "--set", "run.save_iter=3", "--set", "run.log_iter=1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "rank 0/2: trained iterations 0..3" in proc.stderr
    assert "rank 1/2: trained iterations 0..3" in proc.stderr
    assert "x 2 ranks" in proc.stderr
    # files written once, by rank 0
    assert (out / "last.pt").is_file()
    assert len(list(out.glob("iter-*-test_f1-*.pt"))) == 1
    assert not list(out.glob(".*.tmp"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if r["kind"] == "train"] == [1, 2, 3]
    assert [r["iter"] for r in rows if r["kind"] == "eval"] == [3]
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["iteration"] == 3
    assert not any(k.startswith("module.") for k in ck["model"])

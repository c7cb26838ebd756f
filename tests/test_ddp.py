"""Two-process DDP training on CPU (gloo) through torchrun and `python -m sconet.training`:
plain ScoNet-MT-ske, and a DRF warm start whose frozen backbone is unfrozen mid-run (both with
run.sync_bn from their recipes, so with synchronised BatchNorm)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import torch

from _helpers import TINY_TRAIN_SETS, tiny_config
from sconet.checkpoint import read_checkpoint
from sconet.training import train


def _torchrun(cache_root, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SCONET_CACHE=str(cache_root), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sconet.training",
        "--device",
        "cpu",
        "--no-progress",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


def _digests(stderr: str) -> dict[str, str]:
    """Each rank's final parameter digest, from its `rank r/2: trained ...` line."""
    found = re.findall(r"rank (\d)/2: trained iterations \d+\.\.\d+, parameters ([0-9a-f]{16})", stderr)
    return dict(found)


def test_torchrun_two_ranks(small_cache, small_split, tmp_path, cache_root_dir):
    out = tmp_path / "ddp"
    proc = _torchrun(
        cache_root_dir,
        "--recipe",
        "demo-cpu",
        "--cache",
        str(small_cache.path),
        "--split",
        str(small_split),
        "--out",
        str(out),
        "--iters",
        "3",
        *TINY_TRAIN_SETS,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    digests = _digests(proc.stderr)
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-2000:]
    assert "x 2 ranks" in proc.stderr
    # demo-cpu is based on sgd (OpenGait's recipe): BatchNorm synchronised across the ranks
    assert "synchronised BatchNorm across the 2 ranks (13 layers; run.sync_bn)" in proc.stderr
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


def test_torchrun_drf_unfreezes_in_step(small_cache, small_split, tmp_path, cache_root_dir):
    """drf-warmstart on 2 ranks: the backbone is frozen for 2 iterations, then DDP is rebuilt
    with it; the ranks must end with identical weights and the backbone must have trained."""
    init_out = tmp_path / "sconet"
    train(
        tiny_config(
            small_cache.path,
            small_split,
            init_out,
            ("model", "width", 0.0625),
            ("run", "eval_iter", 1000),
            ("run", "save_iter", 1000),
        ),
        progress=False,
        log=lambda _m: None,
    )
    init = init_out / "last.pt"
    out = tmp_path / "drf"
    proc = _torchrun(
        cache_root_dir,
        "--recipe",
        "drf-warmstart",
        "--init-from",
        str(init),
        "--cache",
        str(small_cache.path),
        "--split",
        str(small_split),
        "--out",
        str(out),
        "--iters",
        "4",
        "--set",
        "model.width=0.0625",
        "--set",
        "run.freeze_iters=2",
        "--set",
        "optim.lr=1e-3",
        "--set",
        "schedule.warmup_iters=0",
        "--set",
        "data.p=4",
        "--set",
        "data.k=2",
        "--set",
        "data.frames=8",
        "--set",
        "run.eval_iter=1000",
        "--set",
        "run.save_iter=1000",
        "--set",
        "run.eval_test=false",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "iteration 2: unfroze the backbone" in proc.stderr
    digests = _digests(proc.stderr)
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], proc.stderr[-2000:]
    assert "WARNING" not in proc.stderr
    before, after = read_checkpoint(init).state_dict, read_checkpoint(out / "last.pt").state_dict
    backbone = [
        k
        for k, p in before.items()
        if k.startswith("Backbone.") and p.is_floating_point() and "running_" not in k
    ]
    assert backbone and all(not torch.equal(before[k], after[k]) for k in backbone)

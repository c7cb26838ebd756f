"""Memory (issue 18 case 9): `train` refuses a run that clearly will not fit, before it starts,
with the estimate and the way out; `predict` renders only the frames it uses."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sconet.predict import render_first_frames
from sconet.render import RenderConfig, render_batch
from sconet.training import apply_overrides, load_recipe
from sconet.training.memory import (
    LIMIT_ENV,
    InsufficientMemory,
    available_ram,
    check_memory,
    estimate_memory,
    parse_size,
)

TINY = [
    "--recipe", "demo-cpu", "--device", "cpu", "--no-progress", "--ledger", "none", "--iters", "2",
    "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8", "--set", "data.eval_max_frames=40",
    "--set", "run.eval_iter=2", "--set", "run.save_iter=2",
]  # fmt: skip

# a synthetic-sized dataset: 1000 sequences of 300 frames, 700 for training
OFFSETS = np.arange(0, 1001 * 300, 300)
SETS = {"train": np.arange(700), "test": np.arange(700, 1000)}


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a failed command ends with (progress lines may come before it)."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, proc.stderr
    lines = lines[-1:]
    return lines[0]


def test_estimate_follows_the_settings():
    base = load_recipe("adamw-cosine")  # width 1, P x K x frames = 8 x 8 x 30
    est = estimate_memory(base, OFFSETS, SETS, (2, 64, 64))
    # measured on CPU: 9.0 MB per frame of the batch at width 1 (1920 frames: at least 17 GB)
    assert 15 * 2**30 < est.parts["training step"] < 20 * 2**30, est.describe()
    assert est.parts["frame banks"] == (700 * 300 + 300 * 300) * 2 * 64 * 44
    narrow = estimate_memory(apply_overrides(base, [("model", "width", 0.25)]), OFFSETS, SETS, (2, 64, 64))
    small = estimate_memory(apply_overrides(base, [("data", "k", 2)]), OFFSETS, SETS, (2, 64, 64))
    for cheaper in (narrow, small):
        assert cheaper.parts["training step"] < est.parts["training step"] / 3

    # frames over max_ram_gb are streamed, not held
    def with_(*overrides):
        return estimate_memory(apply_overrides(base, list(overrides)), OFFSETS, SETS, (2, 64, 64))

    assert with_(("data", "max_ram_gb", 0.1)).parts["frame banks"] == 0
    workers = with_(("data", "num_workers", 3))
    assert workers.parts["workers"] > 0 and workers.total > est.total
    # a long evaluation with a small batch: the evaluation is the larger part
    long_eval = with_(("data", "k", 1), ("data", "p", 2), ("data", "eval_batch", 64))
    assert "evaluation" in long_eval.parts and "training step" not in long_eval.parts


def test_refusal_names_the_way_out(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "16G")
    assert available_ram()[0] <= 16 * 2**30
    config = load_recipe("adamw-cosine")
    with pytest.raises(InsufficientMemory) as info:
        check_memory(config, OFFSETS, SETS, (2, 64, 64))
    msg = str(info.value)
    assert "\n" not in msg and "would be killed" in msg and "GiB" in msg
    assert "--set model.width=0.5" in msg and "--set data.k=" in msg and "--device cuda" in msg
    assert "--no-memory-check" in msg
    # what the message suggests does fit
    k = int(msg.split("--set data.k=")[1].split()[0])
    check_memory(apply_overrides(config, [("data", "k", k)]), OFFSETS, SETS, (2, 64, 64))
    check_memory(apply_overrides(config, [("model", "width", 0.5)]), OFFSETS, SETS, (2, 64, 64))


def test_parse_size():
    assert parse_size("8G") == 8 * 2**30 and parse_size("512M") == 512 * 2**20
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size("1000") == 1000
    with pytest.raises(ValueError, match=LIMIT_ENV):
        parse_size("lots")


def test_cli_train_refuses_before_starting(sconet_cli, small_cache, small_split, tmp_path):
    data = ["--cache", small_cache.path, "--split", small_split]
    huge = tmp_path / "huge"
    line = _one_line_error(
        sconet_cli("train", *TINY, *data, "--set", "model.width=1", "--set", "data.k=100000", "--out", huge)
    )
    assert "would be killed" in line and "--set data.k=" in line and "--no-memory-check" in line
    assert not (huge / "last.pt").exists() and not (huge / "config.toml").exists()
    # a machine (or a share of one) with 1 MB: the tiny run is refused; --no-memory-check runs it
    small = tmp_path / "small"
    env = {LIMIT_ENV: "1M"}
    line = _one_line_error(sconet_cli("train", *TINY, *data, "--out", small, env=env))
    assert f"(${LIMIT_ENV})" in line
    forced = sconet_cli("train", *TINY, *data, "--out", small, "--no-memory-check", env=env, timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert (small / "last.pt").is_file()


# -- predict renders what it uses ---------------------------------------------------------------


def _walk(frames: int, seed: int = 0) -> np.ndarray:
    from sconet.data.synth import SynthConfig, generate_sequence

    base = np.asarray(generate_sequence(seed, "positive", SynthConfig(n_sequences=10, frames=300)))
    return np.tile(base, (frames // 300 + 1, 1, 1))[:frames].astype(np.float32)


@pytest.mark.parametrize("gap", [(85, 95), (0, 120), (100, 300)])
def test_rendering_only_the_used_frames_gives_the_same_maps(gap):
    pose = _walk(300)
    pose[gap[0] : gap[1], 9:11, :] = 0  # wrists missing across the cut at 90 (or after it): imputed
    pose[:, 4, :] = 0  # an ear never seen
    for render in (RenderConfig(), RenderConfig(impute="none"), RenderConfig(representation="full-body")):
        np.testing.assert_array_equal(
            render_first_frames(pose, render, 90, threads=1), render_batch([pose], render)[:90]
        )
    np.testing.assert_array_equal(render_first_frames(pose, RenderConfig(), 400), render_batch([pose]))


_PEAK = textwrap.dedent(
    """
    import resource, sys
    from sconet.predict import Screener
    screener = Screener(sys.argv[1], max_frames=90)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = screener.screen(sys.argv[2])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(result.frames, result.frames_used, (after - before) // 1024)
    """
)


def test_predict_on_a_long_recording_stays_small(small_cache, small_split, tmp_path):
    from sconet.training import train

    out = tmp_path / "run"
    cfg = apply_overrides(
        load_recipe("demo-cpu"),
        [("data", "cache", str(small_cache.path)), ("data", "split", str(small_split)), ("data", "p", 4),
         ("data", "k", 2), ("data", "frames", 8), ("data", "eval_max_frames", 40), ("run", "iters", 1),
         ("run", "device", "cpu"), ("run", "out", str(out)), ("run", "ledger", "none"), ("run", "keep_n", 0)],
    )  # fmt: skip
    ckpt = train(cfg, log=lambda _m: None).last_checkpoint
    long = tmp_path / "long.pkl"
    long.write_bytes(pickle.dumps(_walk(60_000)))
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, str(ckpt), str(long)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    frames, used, grown_mb = map(int, proc.stdout.split())
    assert (frames, used) == (60_000, 90)
    # rendering all 60,000 frames would take 60,000 x 8 KiB = 469 MiB of maps alone
    assert grown_mb < 200, grown_mb


@pytest.mark.gpu
def test_cuda_estimate_is_compared_with_gpu_memory():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    config = load_recipe("adamw-cosine")
    est = estimate_memory(config, OFFSETS, SETS, (2, 64, 64), device="cuda")
    assert 0 < est.gpu_available <= torch.cuda.get_device_properties(0).total_memory
    assert est.ram == est.parts["frame banks"] and est.gpu < est.total
    cpu = estimate_memory(config, OFFSETS, SETS, (2, 64, 64), device="cpu")
    assert est.parts["training step"] < cpu.parts["training step"]  # bf16 autocast
    huge = apply_overrides(config, [("data", "k", 100_000)])
    with pytest.raises(InsufficientMemory, match="of GPU memory with .* free") as info:
        check_memory(huge, OFFSETS, SETS, (2, 64, 64), device="cuda")
    assert "--device cuda" not in str(info.value)

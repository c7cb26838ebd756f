"""What users expect (issue 18 cases 13 and 14): a warm start takes the model shape from its
checkpoint, a shape mismatch is one short line, ``--json`` means the same in every command, and
every file sconet writes gets the umask's mode."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sconet._io import atomic_write_bytes, atomic_write_json, current_umask
from sconet.checkpoint import read_checkpoint, save_checkpoint
from sconet.classes import CLASSES
from sconet.data.synth import SynthConfig, generate_sequence
from sconet.training import adopt_init_shape, apply_overrides, checkpoint_shape, load_recipe, train

torch.set_num_threads(2)

TINY = [
    "--device", "cpu", "--no-progress", "--iters", "2", "--ledger", "none",
    "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8", "--set", "data.eval_max_frames=40",
    "--set", "run.eval_iter=2", "--set", "run.save_iter=2", "--set", "run.keep_n=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def recorded(small_cache, small_split, tmp_path_factory):
    """A tiny demo-width (1/16) run recorded in a ledger: ``(checkpoint, ledger)``."""
    root = tmp_path_factory.mktemp("conventions")
    db = root / "ledger.sqlite"
    cfg = apply_overrides(
        load_recipe("demo-cpu"),
        [("data", "cache", str(small_cache.path)), ("data", "split", str(small_split)), ("data", "p", 4),
         ("data", "k", 2), ("data", "frames", 8), ("data", "eval_max_frames", 20), ("run", "iters", 2),
         ("run", "eval_iter", 2), ("run", "save_iter", 2), ("run", "keep_n", 1), ("run", "device", "cpu"),
         ("run", "out", str(root / "run")), ("run", "ledger", str(db))],
    )  # fmt: skip
    result = train(cfg, log=lambda _m: None)
    (best,) = sorted(result.out.glob("iter-0000002-test_f1-*.pt"))
    return best, db


@pytest.fixture(scope="module")
def pose_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pose") / "subject.pkl"
    path.write_bytes(pickle.dumps(generate_sequence(1, "positive", SynthConfig(n_sequences=10, frames=60))))
    return path


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


# -- case 13: the model shape of a warm start ------------------------------------------------------


def test_warm_start_takes_the_checkpoint_shape(recorded, sconet_cli, small_cache, small_split, tmp_path):
    ckpt, _ = recorded
    data = ["--cache", small_cache.path, "--split", small_split, "--init-from", ckpt]
    out = tmp_path / "drf"
    proc = sconet_cli("train", "--recipe", "drf-warmstart", *TINY, *data, "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"note: model shape from the --init-from checkpoint {ckpt}: width=0.0625" in proc.stderr
    saved = read_checkpoint(out / "last.pt").model_config
    assert saved["width"] == 0.0625 and saved["arch"] == "drf"
    # set by the user: kept, and the mismatch is one short line
    line = _one_line_error(
        sconet_cli(
            "train",
            "--recipe",
            "drf-warmstart",
            *TINY,
            *data,
            "--set",
            "model.width=0.125",
            "--out",
            tmp_path / "wide",
        )  # fmt: skip
    )
    assert line.startswith(f"error: {ckpt}: cannot warm-start") and "width=0.0625" in line
    assert "more tensors of another shape" in line and len(line) < 800, len(line)


def test_adopt_init_shape_api(recorded, tmp_path):
    ckpt, _ = recorded
    config = apply_overrides(load_recipe("drf-warmstart"), [("run", "init_from", str(ckpt))])
    said: list[str] = []
    adopted = adopt_init_shape(config, log=said.append)
    assert adopted.model.width == 0.0625 and adopted.model.arch == "drf" and len(said) == 1
    assert config.model.width == 1.0  # the input is left alone
    assert adopt_init_shape(config, {"model.width"}, log=said.append).model.width == 1.0
    assert adopt_init_shape(adopted, log=said.append) is adopted and len(said) == 1  # nothing to take
    # a foreign (OpenGait) file records no settings: the shape is read off its tensors
    foreign = tmp_path / "opengait.pt"
    torch.save({"model": read_checkpoint(ckpt).state_dict, "iteration": 7}, foreign)
    assert checkpoint_shape(foreign) == {
        "in_channels": 2, "width": 0.0625, "parts": 16, "embed_dim": 256, "num_classes": 3,
    }  # fmt: skip


# -- case 14: one meaning of --json, files with the umask's mode ----------------------------------


def test_json_option_means_the_same_everywhere(recorded, pose_file, sconet_cli, tmp_path):
    ckpt, db = recorded
    predict = ["predict", pose_file, "--ckpt", ckpt]
    # FILE.json: the document goes to the file, the usual text to stdout
    out = tmp_path / "predict.json"
    proc = sconet_cli(*predict, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "prediction:" in proc.stdout and f"json: {out}" in proc.stdout
    assert json.loads(out.read_text())["predicted"] in CLASSES
    # '-' and the bare flag (its older form, also before the argument): the document on stdout
    older = ["predict", "--json", pose_file, "--ckpt", ckpt]
    for args in ([*predict, "--json", "-"], [*predict, "--json"], older):
        proc = sconet_cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["source"] == str(pose_file)
    # eval: the bare flag now prints too; a file as before
    ev = ["eval", ckpt, "--device", "cpu", "--max-frames", "20"]
    proc = sconet_cli(*ev, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["set"] == "test", proc.stderr
    proc = sconet_cli(*ev, "--json", tmp_path / "eval.json")
    assert proc.returncode == 0 and "macro P/R/F1" in proc.stdout
    assert json.loads((tmp_path / "eval.json").read_text())["set"] == "test"
    # runs and runs show: stdout or a file
    proc = sconet_cli("runs", "--ledger", db, "--json", tmp_path / "runs.json")
    assert proc.returncode == 0 and "best F1" in proc.stdout, proc.stderr
    assert len(json.loads((tmp_path / "runs.json").read_text())["runs"]) == 1
    proc = sconet_cli("runs", "--ledger", db, "--json", "show", "1")
    assert proc.returncode == 0 and json.loads(proc.stdout)["run"]["id"] == 1, proc.stderr
    proc = sconet_cli("runs", "--ledger", db, "show", "1", "--json", tmp_path / "show.json")
    assert proc.returncode == 0 and json.loads((tmp_path / "show.json").read_text())["run"]["id"] == 1
    # a folder is not a file name
    (tmp_path / "dir.json").mkdir()
    line = _one_line_error(sconet_cli(*predict, "--json", tmp_path / "dir.json"))
    assert f"{tmp_path / 'dir.json'}: --json names a folder" in line, line


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_json(tmp_path / "b.json", {"x": 1})
        save_checkpoint({"x": torch.zeros(1)}, tmp_path / "c.pt")
        with open(tmp_path / "reference", "w") as f:  # what open() gives
            f.write("x")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ("a.bin", "b.json", "c.pt", "reference"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_promotion_and_report_files_get_the_umask_mode(recorded, pose_file, tmp_path):
    ckpt, db = recorded
    art, png, doc = tmp_path / "artifact", tmp_path / "report.png", tmp_path / "predict.json"
    exe = str(Path(sys.executable).parent / "sconet")

    def umask_027() -> None:
        os.umask(0o027)

    for argv in (
        [exe, "promote", ckpt, "--ledger", db, "--artifact-dir", art, "--device", "cpu"],
        [exe, "predict", pose_file, "--ckpt", ckpt, "--report", png, "--json", doc],
    ):
        proc = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=300,
                              preexec_fn=umask_027)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    files = [art / "promoted.json", art / "CHANGELOG.md", png, doc, *art.glob("*.json")]
    assert len(files) >= 5
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path

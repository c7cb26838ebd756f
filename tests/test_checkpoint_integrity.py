"""Checkpoint integrity and metadata (issue 18, cases 6 and 7): a digest of every entry checked by
every reader, one schema for the entries, one loader for split files in `eval --split`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from _helpers import tiny_config
from sconet.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from sconet.evaluation import evaluate_checkpoint

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def run(small_cache, small_split, tmp_path_factory):
    """A tiny recorded run: (its result, its config)."""
    from sconet.training import apply_overrides, train

    root = tmp_path_factory.mktemp("integrity_run")
    config = apply_overrides(
        tiny_config(small_cache.path, small_split, root / "run"), [("run", "ledger", str(root / "l.sqlite"))]
    )
    return train(config, progress=False, log=lambda m: None), config


@pytest.fixture(scope="module")
def trained(run):
    return run[0]


def _perturbed(trained, tmp_path: Path, name: str = "last.pt") -> Path:
    """A copy of last.pt with one weight nudged and the file re-written as torch would: the digest
    saved with it no longer matches."""
    raw = torch.load(trained.last_checkpoint, weights_only=True)
    key = next(k for k in raw["model"] if k.endswith("conv1.conv.weight"))
    raw["model"][key][0, 0, 0, 0] += 1e-3
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(raw, path)
    return path


def _one_error_line(proc, path: Path) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: "), line
    return line


# ---------------------------------------------------------------------------------------------
# case 6: a digest, checked by every reader
# ---------------------------------------------------------------------------------------------


def test_saved_files_carry_a_digest_of_every_entry(trained):
    raw = torch.load(trained.last_checkpoint, weights_only=True)
    assert raw["digest"]["algorithm"] == "sha256"
    assert set(raw["digest"]["entries"]) == set(raw) - {"digest"}
    assert read_checkpoint(trained.last_checkpoint).notes == []
    for kept in trained.out.glob("iter-*.pt"):
        assert read_checkpoint(kept).kind == "sconet"


def test_perturbed_weights_are_refused_by_every_reader(run, small_cache, tmp_path):
    from sconet.models import ModelConfig, ScoNetMT
    from sconet.predict import Screener
    from sconet.training import apply_overrides, train
    from sconet.training.warmstart import init_from

    trained, trained_config = run
    bad = _perturbed(trained, tmp_path)
    pattern = rf"^{bad}: damaged checkpoint: entry 'model' does not match the digest"
    with pytest.raises(CheckpointError, match=pattern):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match=pattern):
        evaluate_checkpoint(bad, cache=small_cache.path, device="cpu")
    with pytest.raises(CheckpointError, match=pattern):
        Screener(bad)
    model = ScoNetMT(ModelConfig.from_dict(read_checkpoint(trained.last_checkpoint).model_config))
    with pytest.raises(CheckpointError, match=pattern):
        init_from(model, bad, log=lambda m: None)
    # --resume: the run folder's last.pt
    folder = tmp_path / "resumed"
    shutil.copytree(trained.out, folder)
    bad_last = _perturbed(trained, folder)
    config = apply_overrides(trained_config, [("run", "out", str(folder)), ("run", "iters", 4)])
    with pytest.raises(CheckpointError, match=rf"^{bad_last}: damaged checkpoint"):
        train(config, resume=True, progress=False, log=lambda m: None)


def test_promote_checks_the_digest_even_when_the_ledger_agrees(run, tmp_path):
    from sconet.experiments import Ledger, file_sha256, promote

    trained, config = run
    db = Ledger(config.run.ledger)
    bad = _perturbed(trained, tmp_path)
    record = db.checkpoints(sha256=file_sha256(trained.last_checkpoint))[0]
    db.add_checkpoint(record.run_id, bad, record.iteration, role="last", metrics=record.metrics,
                      metrics_iteration=record.metrics_iteration)  # fmt: skip
    with pytest.raises(CheckpointError, match=rf"^{bad}: damaged checkpoint"):
        promote(bad, ledger=config.run.ledger, artifact_dir=tmp_path / "art", device="cpu")
    assert not (tmp_path / "art").exists() or not any((tmp_path / "art").rglob("*.pt"))


def test_cli_eval_and_predict_refuse_perturbed_weights(trained, sconet_cli, small_dataset, tmp_path):
    bad = _perturbed(trained, tmp_path)
    line = _one_error_line(sconet_cli("eval", bad, "--device", "cpu", "--ledger", "none"), bad)
    assert "damaged checkpoint" in line and "'model'" in line
    pose = sorted(small_dataset.glob("00000/*/*/*.pkl"))[0]
    line = _one_error_line(sconet_cli("predict", pose, "--ckpt", bad), bad)
    assert "damaged checkpoint" in line


def test_foreign_checkpoint_loads_with_a_note(trained, small_cache, small_split, tmp_path):
    raw = torch.load(trained.last_checkpoint, weights_only=True)
    foreign = tmp_path / "opengait.pt"
    torch.save({"model": raw["model"], "iteration": 2}, foreign)
    ck = read_checkpoint(foreign)
    assert ck.kind == "opengait" and ck.notes and "carries no digest" in ck.notes[0]
    # an OpenGait file records no render settings: the maps it was trained on are stated
    from sconet.cache import open_cache
    from sconet.render.spec import RenderSpec

    stated = RenderSpec(None, open_cache(small_cache.path).render_config.to_dict())
    result = evaluate_checkpoint(
        foreign, cache=small_cache.path, split=small_split, device="cpu", render=stated
    )
    assert f"note: {foreign} carries no digest" in result.format()


# ---------------------------------------------------------------------------------------------
# case 7: one schema for the entries, one line naming the file
# ---------------------------------------------------------------------------------------------

MALFORMED = {
    "class_order": (5, "'class_order' must list the classes"),
    "model_config": ([1, 2], "'model_config' must be a dict"),
    "recipe": ("abc", "'recipe' must be a dict"),
    "split.test_ids": (5, "'split' 'test_ids' must be a list of id strings"),
    "pav_stats": ({}, "'pav_stats' has no 'levels'"),
    "iteration": ("abc", "'iteration' must be an integer >= 0"),
    "model_config.width": (-1.0, "'model_config' is not a valid model configuration"),
    "recipe.data.eval_max_frames": ("many", "'recipe' 'data' 'eval_max_frames' must be an integer >= 1"),
    "cache": ("here", "'cache' must be a dict"),
    "cache.pose_source": ("blazepose", "'cache' 'pose_source' must be a dict"),
    "pav_norm": ({"min": torch.zeros(3), "max": torch.ones(8, 3)}, "'pav_norm' 'min' must have shape [8, 3]"),
    "metrics": ({"test_f1": "high"}, "'metrics' 'test_f1' must be a number"),
}
ISSUE_CASES = ["class_order", "split.test_ids", "model_config", "recipe", "pav_stats", "iteration"]


def _malformed(trained, tmp_path: Path, field: str) -> Path:
    raw = torch.load(trained.last_checkpoint, weights_only=True)
    value = MALFORMED[field][0]
    *parents, last = field.split(".")
    node = raw
    for p in parents:
        node = node[p]
    node[last] = value
    path = tmp_path / f"{field}.pt"
    save_checkpoint(raw, path)  # a fresh digest: the schema is what refuses it
    return path


@pytest.mark.parametrize("field", sorted(MALFORMED))
def test_malformed_entries_are_refused_naming_file_and_entry(trained, tmp_path, field):
    path = _malformed(trained, tmp_path, field)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(err.value) == f"{path}: malformed checkpoint: {MALFORMED[field][1]}" or str(
        err.value
    ).startswith(f"{path}: malformed checkpoint: {MALFORMED[field][1]}")


# each `sconet eval` subprocess imports torch (seconds): two in the default suite, the rest slow
@pytest.mark.parametrize(
    "field", [f if i < 2 else pytest.param(f, marks=pytest.mark.slow) for i, f in enumerate(ISSUE_CASES)]
)
def test_cli_malformed_entries_one_line_each(trained, sconet_cli, tmp_path, field):
    path = _malformed(trained, tmp_path, field)
    line = _one_error_line(sconet_cli("eval", path, "--device", "cpu", "--ledger", "none"), path)
    assert MALFORMED[field][1] in line, line


def test_resume_with_a_recipe_that_is_no_longer_valid(trained, sconet_cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.out, run)
    raw = torch.load(run / "last.pt", weights_only=True)
    raw["recipe"]["run"]["no_such_key"] = 1
    save_checkpoint(raw, run / "last.pt")
    line = _one_error_line(sconet_cli("train", "--resume", "--out", run, "--ledger", "none"), run / "last.pt")
    assert "the recipe saved in the checkpoint is not valid" in line and "no_such_key" in line


# ---------------------------------------------------------------------------------------------
# eval --split: the one split loader, BOM, overlap with the training ids
# ---------------------------------------------------------------------------------------------


def test_eval_split_uses_the_split_loader(trained, sconet_cli, small_split, small_cache, tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["00000", "00001"]))
    line = _one_error_line(
        sconet_cli("eval", trained.last_checkpoint, "--split", listed, "--ledger", "none"), listed
    )
    assert "expected a JSON object" in line

    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + small_split.read_bytes())
    ok = evaluate_checkpoint(trained.last_checkpoint, split=bom, device="cpu")
    assert ok.split == "bom" and not any(n.startswith("warning") for n in ok.notes)

    doc = json.loads(small_split.read_text())
    leaky = tmp_path / "leaky.json"
    leaky.write_text(json.dumps({"TRAIN_SET": doc["TEST_SET"], "TEST_SET": doc["TRAIN_SET"]}))
    result = evaluate_checkpoint(trained.last_checkpoint, split=leaky, device="cpu")
    n = len(doc["TRAIN_SET"])
    warning = f"warning: {n} of the {n} test ids of {leaky} were training or validation ids"
    assert warning in result.format()

    run_split = trained.out / "split.json"  # a run's split.json (VAL_SET too) reads as a split
    val = evaluate_checkpoint(trained.last_checkpoint, split=run_split, subset="test", device="cpu")
    assert val.metrics.num_samples == len(json.loads(run_split.read_text())["TEST_SET"])

"""DRF: PAV normalisation on training ids only, gates off == ScoNet-MT-ske, strict warm start,
freezing (with resume), a short CPU run that learns, and ``sconet eval --explain``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import reseal_store, tiny_config
from sconet.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from sconet.models import ModelConfig, ScoNetMT
from sconet.stream import PavNormalizer
from sconet.training import (
    ConfigError,
    TrainError,
    apply_overrides,
    frozen_modules,
    init_from,
    load_recipe,
    train,
)

torch.set_num_threads(2)

WIDTH = 0.0625


def _quiet(_msg: str) -> None:
    pass


def tiny(recipe: str, cache: Path, split: Path, out: Path, *extra) -> object:
    """A few-second CPU config: width 1/16, P x K 4 x 2, 8 frames, no evaluation unless asked."""
    return tiny_config(
        cache,
        split,
        out,
        ("model", "width", WIDTH),
        ("run", "eval_iter", 1000),
        ("run", "save_iter", 1000),
        ("run", "eval_test", False),
        *extra,
        recipe=recipe,
    )


def _state(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).state_dict


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


def _changed(a: dict, b: dict, prefix: str) -> bool:
    """Every parameter / running statistic under ``prefix`` differs (num_batches_tracked aside)."""
    keys = [k for k in a if k.startswith(prefix) and not k.endswith("num_batches_tracked")]
    assert keys, prefix
    return all(not torch.equal(a[k], b[k]) for k in keys)


# -- fixtures: a ScoNet-MT-ske checkpoint, and a DRF warm start with the backbone frozen ---------


@pytest.fixture(scope="module")
def sconet_ckpt(small_cache, small_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("drf") / "sconet"
    train(tiny("demo-cpu", small_cache.path, small_split, out), progress=False, log=_quiet)
    return out / "last.pt"


def _warm(small_cache, small_split, out: Path, init: Path, *extra):
    return tiny(
        "drf-warmstart",
        small_cache.path,
        small_split,
        out,
        ("run", "init_from", str(init)),
        ("run", "iters", 5),
        ("run", "freeze_iters", 3),
        ("optim", "lr", 1e-3),
        ("schedule", "warmup_iters", 0),
        *extra,
    )


@pytest.fixture(scope="module")
def warm_run(small_cache, small_split, sconet_ckpt, tmp_path_factory):
    """drf-warmstart, backbone frozen for 3 of 5 iterations, run as 3 (stop) + resume 2; snapshots."""
    base = tmp_path_factory.mktemp("drf")
    cfg = _warm(small_cache, small_split, base / "warm", sconet_ckpt)
    messages: list[str] = []
    first = train(cfg, progress=False, log=messages.append, stop_at=3)
    at3 = base / "at3.pt"
    shutil.copyfile(base / "warm" / "last.pt", at3)
    second = train(cfg, resume=True, progress=False, log=messages.append)
    return {"out": base / "warm", "at3": at3, "losses": first.losses + second.losses, "messages": messages}


# -- recipe, config, CLI flag --------------------------------------------------------------------


def test_recipe_and_freeze_config():
    drf, cos = load_recipe("drf-warmstart"), load_recipe("adamw-cosine")
    assert drf.model.arch == "drf" and drf.model.pga == "both"
    assert drf.optim.name == "adamw" and drf.optim.lr < cos.optim.lr and drf.schedule.name == "cosine"
    assert drf.run.require_init and drf.run.freeze == "backbone" and drf.run.freeze_iters > 0
    c = apply_overrides(drf, ["run.freeze=backbone+fcs", "run.freeze_iters=7", "model.pga=channel"])
    assert (c.run.freeze, c.run.freeze_iters, c.model.pga) == ("backbone+fcs", 7, "channel")
    with pytest.raises(ConfigError, match="run.freeze must be one of"):
        apply_overrides(drf, ["run.freeze=everything"])
    with pytest.raises(ConfigError, match="run.freeze_iters must be >= 0"):
        apply_overrides(drf, ["run.freeze_iters=-1"])
    with pytest.raises(ConfigError, match="pga"):
        apply_overrides(drf, ["model.pga=sideways"])
    model = ScoNetMT(ModelConfig(width=WIDTH, arch="drf"))
    assert frozen_modules(model, "none") == []
    assert frozen_modules(model, "backbone+fcs") == [model.Backbone, model.FCs]


def test_cli_model_flag():
    import tomllib

    from typer.testing import CliRunner

    from sconet.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--model", "drf", "--set", "model.pga=part", "--print-config"])
    assert res.exit_code == 0, res.output
    doc = tomllib.loads(res.output)
    assert doc["model"]["arch"] == "drf" and doc["model"]["pga"] == "part"
    res = runner.invoke(app, ["train", "--recipe", "drf-warmstart", "--model", "sconet", "--print-config"])
    assert res.exit_code == 0 and tomllib.loads(res.output)["model"]["arch"] == "sconet"
    res = runner.invoke(app, ["train", "--model", "resnet", "--print-config"])
    assert res.exit_code != 0


# -- PAV normalisation -----------------------------------------------------------------------------


def test_pav_normalisation_uses_training_ids_only(small_cache, small_split, store_copy, tmp_path):
    import zarr

    from sconet.cache import open_cache

    split = json.loads(small_split.read_text())
    original = open_cache(small_cache.path)
    train_idx = original.indices_of([str(i) for i in split["TRAIN_SET"]])
    test_idx = original.indices_of([str(i) for i in split["TEST_SET"]])
    expected = PavNormalizer.fit(original.pav[train_idx])

    def stats(store: Path, out: Path) -> dict:
        cfg = tiny("demo-cpu", store, small_split, out, ("model", "arch", "drf"), ("run", "iters", 1))
        train(cfg, progress=False, log=_quiet)
        return read_checkpoint(out / "last.pt").raw["pav_norm"]

    def perturb(indices: np.ndarray, value: float) -> None:
        arr = zarr.open_array(str(store_copy / "pav"), mode="r+")
        pav = arr[:]
        pav[indices] = value
        arr[:] = pav
        reseal_store(store_copy)  # an edit on purpose: the store's digests follow it

    base = stats(small_cache.path, tmp_path / "a")
    assert torch.equal(base["min"], torch.from_numpy(expected.lo)) and torch.equal(
        base["max"], torch.from_numpy(expected.hi)
    )
    # absurd PAVs on every test id: the statistics do not move
    perturb(test_idx, 1e6)
    assert open_cache(store_copy).pav[test_idx].max() == 1e6
    moved_test = stats(store_copy, tmp_path / "b")
    assert all(torch.equal(base[k], moved_test[k]) for k in ("min", "max"))
    # the same on one training id does (the check is sensitive)
    perturb(train_idx[:1], 1e6)
    moved_train = stats(store_copy, tmp_path / "c")
    assert float(moved_train["max"].max()) == 1e6
    # and the normalised values are clipped to [0, 1] for out-of-range (test) PAVs
    norm = PavNormalizer.from_state_dict(base)
    assert norm(open_cache(store_copy).pav[test_idx]).max() == 1.0


# -- gates off == ScoNet-MT-ske; strict warm start -------------------------------------------------


def test_warm_start_restores_every_weight_and_gates_off_equals_sconet(sconet_ckpt):
    sd = _state(sconet_ckpt)
    sconet = ScoNetMT(ModelConfig(width=WIDTH), seed=3)
    init_from(sconet, sconet_ckpt, log=_quiet)
    drf = ScoNetMT(ModelConfig(width=WIDTH, arch="drf", pga="none"), seed=7)
    fresh_pga = {k: v.clone() for k, v in drf.state_dict().items() if k.startswith("PGA.")}
    messages: list[str] = []
    report = init_from(drf, sconet_ckpt, log=messages.append)
    assert sorted(report.initialised) == sorted(fresh_pga) and len(fresh_pga) == 4
    assert "restored 79 of 83" in messages[0]
    own = drf.state_dict()
    for key, value in sd.items():  # every ScoNet weight and BN statistic, exactly
        assert torch.equal(own[key], value), key
    for key, value in fresh_pga.items():  # only the PGA parameters are new
        assert torch.equal(own[key], value), key
    # with both gates off DRF computes exactly ScoNet-MT-ske (eval and train mode)
    x = torch.rand(7, 2, 64, 44, generator=torch.Generator().manual_seed(0))
    pav = torch.rand(2, 8, 3)
    for mode in ("eval", "train"):
        getattr(sconet, mode)(), getattr(drf, mode)()
        with torch.no_grad():
            a, b = sconet(x, [4, 3]), drf(x, [4, 3], pav=pav)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.embeddings, b.embeddings)
    # each gate alone changes the output (same weights)
    for pga in ("channel", "part", "both"):
        gated = ScoNetMT(ModelConfig(width=WIDTH, arch="drf", pga=pga)).eval()
        gated.load_state_dict(drf.state_dict())
        with torch.no_grad():
            c = gated(x, [4, 3], pav=pav)
        assert not torch.allclose(c.embeddings, a.embeddings), pga


def test_warm_start_refuses_mismatches(sconet_ckpt, tmp_path):
    raw = read_checkpoint(sconet_ckpt).raw
    sd = dict(raw["model"])

    def variant(name: str, model_sd: dict) -> Path:
        path = tmp_path / name
        save_checkpoint({**raw, "model": model_sd}, path)
        return path

    drf = lambda **kw: ScoNetMT(ModelConfig(**{"width": WIDTH, "arch": "drf", **kw}))  # noqa: E731
    cases = [
        (sconet_ckpt, drf(width=0.125), "shape mismatch for Backbone.forward_block.conv1.conv.weight"),
        (
            variant("missing.pt", {k: v for k, v in sd.items() if k != "BNNecks.bn1d.running_mean"}),
            drf(),
            "missing keys (1): BNNecks.bn1d.running_mean",
        ),
        (
            variant("extra.pt", {**sd, "Head.weight": torch.zeros(3)}),
            drf(),
            "unexpected keys (1): Head.weight",
        ),
        (variant("half_pga.pt", {**sd, "PGA.spatial_attention.bias": torch.zeros(1)}), drf(), "missing keys"),
        (
            variant(
                "drf.pt", {**sd, **{k: v for k, v in drf().state_dict().items() if k.startswith("PGA.")}}
            ),
            ScoNetMT(ModelConfig(width=WIDTH)),
            "unexpected keys (4): PGA.",
        ),
        (
            variant("shape.pt", {**sd, "FCs.fc_bin": sd["FCs.fc_bin"][:, :, :128]}),
            drf(),
            "shape mismatch for FCs.fc_bin",
        ),
    ]
    for path, model, pattern in cases:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(CheckpointError) as info:
            init_from(model, path, log=_quiet)
        message = str(info.value)
        assert message.startswith(str(path)), message
        assert pattern in message, message
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded
    # the warm-start recipe needs a checkpoint
    cfg = tiny("drf-warmstart", tmp_path, tmp_path / "split.json", tmp_path / "run")
    with pytest.raises(TrainError, match="--init-from"):
        train(cfg, progress=False, log=_quiet)
    assert not (tmp_path / "run").exists()


def test_cli_warm_start_errors(sconet_cli, sconet_ckpt, small_cache, small_split, tmp_path):
    proc = sconet_cli("train", "--recipe", "drf-warmstart", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "--init-from" in proc.stderr and "Traceback" not in proc.stderr
    proc = sconet_cli(
        "train",
        "--recipe",
        "drf-warmstart",
        "--init-from",
        str(sconet_ckpt),
        "--cache",
        str(small_cache.path),
        "--split",
        str(small_split),
        "--device",
        "cpu",
        "--set",
        "model.width=0.125",
        "--out",
        str(tmp_path / "r2"),
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {sconet_ckpt}") and "shape mismatch" in line and "width=0.0625" in line


# -- freezing --------------------------------------------------------------------------------------


def test_freezing_freezes_then_trains(warm_run, sconet_ckpt, small_cache, small_split, tmp_path):
    init = _state(sconet_ckpt)
    at3, end = _state(warm_run["at3"]), _state(warm_run["out"] / "last.pt")
    assert any("freezing the backbone" in m for m in warm_run["messages"])
    # iterations 1-3: backbone weights and BN statistics exactly the warm-start ones (no AdamW decay)
    assert _same(at3, init, "Backbone.")
    assert _changed(at3, init, "FCs.") and _changed(at3, init, "BNNecks.fc_bin")
    pga0 = ScoNetMT(ModelConfig(width=WIDTH, arch="drf"), seed=0).state_dict()
    assert _changed(at3, pga0, "PGA.")
    # no optimiser state for the frozen parameters
    ck = read_checkpoint(warm_run["at3"])
    n_backbone = sum(
        1 for k in at3 if k.startswith("Backbone.") and "running" not in k and "num_batches" not in k
    )
    assert (
        len(ck.raw["optimizer"]["state"])
        == len(list(ScoNetMT(ModelConfig(width=WIDTH, arch="drf")).parameters())) - n_backbone
    )
    # iterations 4-5 (after resuming): everything trains, BN statistics move again
    assert _changed(end, at3, "Backbone.forward_block.conv1") and _changed(
        end, at3, "Backbone.forward_block.bn1"
    )
    assert _changed(end, at3, "Backbone.forward_block.layer4")
    # 3 + resume 2 == 5 straight (freezing survives resume)
    messages: list[str] = []
    straight = train(
        _warm(small_cache, small_split, tmp_path / "straight", sconet_ckpt),
        progress=False,
        log=messages.append,
    )
    assert any("iteration 3: unfroze the backbone" in m for m in messages)
    assert straight.losses == warm_run["losses"]
    b = _state(tmp_path / "straight" / "last.pt")
    assert all(torch.equal(end[k], b[k]) for k in end)


def test_freezing_backbone_and_fcs(sconet_ckpt, small_cache, small_split, tmp_path):
    cfg = _warm(
        small_cache,
        small_split,
        tmp_path / "bf",
        sconet_ckpt,
        ("run", "iters", 2),
        ("run", "freeze", "backbone+fcs"),
        ("run", "freeze_iters", 2),
    )
    train(cfg, progress=False, log=_quiet)
    init, end = _state(sconet_ckpt), _state(tmp_path / "bf" / "last.pt")
    assert _same(end, init, "Backbone.") and _same(end, init, "FCs.")
    assert _changed(end, init, "BNNecks.fc_bin") and _changed(end, init, "BNNecks.bn1d.running_mean")


# -- a short run that learns, and its explanation --------------------------------------------------


@pytest.fixture(scope="module")
def learned(small_cache, small_split, tmp_path_factory):
    """DRF from scratch, 30 iterations of demo-cpu (lr 2e-3) on the 15 training sequences."""
    out = tmp_path_factory.mktemp("drf") / "learn"
    cfg = tiny("demo-cpu", small_cache.path, small_split, out, ("model", "arch", "drf"), ("run", "iters", 30))
    return train(cfg, progress=False, log=_quiet)


def test_short_drf_run_learns(learned):
    from sconet.evaluation import evaluate_checkpoint

    losses = np.array(learned.losses)
    assert len(losses) == 30 and np.isfinite(losses).all()
    q = len(losses) // 4
    assert losses[-q:].mean() < 0.85 * losses[:q].mean(), losses
    # fits its training sequences clearly above the majority-class rate
    res = evaluate_checkpoint(learned.out / "last.pt", subset="train", device="cpu", max_frames=40)
    majority = np.bincount(res.predictions.labels).max() / len(res.predictions.labels)
    assert res.metrics.accuracy > majority + 0.1, (res.metrics.accuracy, majority)


def test_eval_explain_json_and_png(learned, sconet_ckpt, sconet_cli, tmp_path):
    from PIL import Image

    report, pngs = tmp_path / "explain.json", tmp_path / "png"
    proc = sconet_cli(
        "eval",
        str(learned.out / "last.pt"),
        "--device",
        "cpu",
        "--max-frames",
        "40",
        "--explain",
        "--explain-dir",
        str(pngs),
        "--json",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    assert "part gate, mean by true class" in proc.stdout and "channel gate" in proc.stdout
    assert "mean normalised PAV by true class" in proc.stdout
    doc = json.loads(report.read_text())
    assert doc["explain"]["arch"] == "drf" and doc["explain"]["pav_pairs"][0] == "eyes"
    preds = doc["predictions"]
    ck = read_checkpoint(learned.out / "last.pt")
    assert len(preds) == len(ck.split["test_ids"])
    norm = PavNormalizer.from_state_dict(ck.raw["pav_norm"])  # the stored training statistics
    for p in preds:
        raw = np.array(p["pav_raw"], dtype=np.float32)
        assert raw.shape == (8, 3) and np.array(p["pav_norm"]).shape == (8, 3)
        np.testing.assert_allclose(p["pav_norm"], norm(raw), atol=1e-5)
        assert len(p["channel_gate"]) == 256 and len(p["part_gate"]) == 16
        assert all(0 < g < 1 for g in p["part_gate"] + p["channel_gate"])
    files = sorted(pngs.glob("*.png"))
    assert len(files) == len(preds) and files[0].name.endswith(f"-{preds[0]['id']}.png")
    with Image.open(files[0]) as img:
        assert img.format == "PNG" and img.width > 600 and img.height > 400
    # the gates in the JSON are the ones the model applies (PGA of the normalised PAV)
    from sconet.evaluation import load_model

    model = load_model(ck).eval()
    with torch.no_grad():
        cg, pg = model.PGA(torch.tensor([p["pav_norm"] for p in preds[:3]], dtype=torch.float32))
    np.testing.assert_allclose(pg[:, 0].numpy(), [p["part_gate"] for p in preds[:3]], atol=1e-4)
    np.testing.assert_allclose(cg[..., 0].numpy(), [p["channel_gate"] for p in preds[:3]], atol=1e-4)
    # a plain ScoNet-MT-ske checkpoint: PAV only, no gates
    proc = sconet_cli(
        "eval", str(sconet_ckpt), "--device", "cpu", "--max-frames", "40", "--explain", "--json", "-"
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["explain"]["arch"] == "sconet" and doc["predictions"][0]["part_gate"] is None
    assert np.array(doc["predictions"][0]["pav_raw"]).shape == (8, 3)


def test_warm_start_from_a_2024_order_file_follows_run_init_class_order(small_cache, small_split, tmp_path):
    """A foreign (OpenGait) file trained in the 2024 class order (negative, positive, neutral):
    ``run.init_class_order = "2024"`` puts its classifier columns back in sconet's order."""
    from sconet.classes import class_permutation
    from sconet.training.distributed import Dist
    from sconet.training.setup import build_parts, load_data

    source = ScoNetMT(ModelConfig(width=WIDTH), seed=7)
    torch.nn.init.normal_(source.BNNecks.fc_bin)  # columns that differ clearly
    sd = {f"module.{k}": v.clone() for k, v in source.state_dict().items()}
    to_2024 = list(class_permutation("2025", "2024"))
    sd["module.BNNecks.fc_bin"] = sd["module.BNNecks.fc_bin"][..., to_2024].clone()
    foreign = tmp_path / "opengait-2024.pt"
    torch.save({"model": sd, "optimizer": {}, "scheduler": {}, "iteration": 40000}, foreign)

    def warm(order: str) -> ScoNetMT:
        cfg = tiny_config(
            small_cache.path,
            small_split,
            tmp_path / f"run-{order}",
            ("model", "width", WIDTH),
            ("run", "init_from", str(foreign)),
            ("run", "init_class_order", order),
            ("data", "render", {"representation": "body-only"}),  # the file's maps: the small cache's
        )
        data = load_data(cfg, Dist(), _quiet, None)
        return build_parts(cfg, data, torch.device("cpu"), _quiet, None).model

    restored = warm("2024").state_dict()
    for k, v in source.state_dict().items():
        assert torch.equal(restored[k], v), k
    as_2025 = warm("2025").BNNecks.fc_bin
    assert torch.equal(as_2025, source.BNNecks.fc_bin[..., to_2024])  # read as-is: columns swapped

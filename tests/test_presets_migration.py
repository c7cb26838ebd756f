"""Render presets in statements: `--preset` for imports, OpenGait checkpoints and training."""

from __future__ import annotations

import pytest

from sconet.cache import ImportConfig, export_heatmaps, import_heatmaps, open_cache
from sconet.render import get_preset
from sconet.render.spec import RenderSpec
from sconet.training import ConfigError, apply_overrides, load_recipe


def test_a_preset_is_the_base_and_settings_override_it():
    spec = RenderSpec("opengait-sigma15-joint8", {"sigma_limb": 12.0})
    want = get_preset("opengait-sigma15-joint8").to_dict() | {"sigma_limb": 12.0}
    assert spec.resolve().to_dict() == want
    assert spec.describe() == "preset opengait-sigma15-joint8 with sigma_limb=12"
    assert spec.to_dict()["render"] == want and spec.to_dict()["preset"] == "opengait-sigma15-joint8"
    with pytest.raises(ValueError, match="unknown render preset 'opengait-2'"):
        RenderSpec("opengait-2").resolve()


def test_import_records_the_preset(small_store, tmp_path):
    export_heatmaps(small_store.path, tmp_path / "og")
    stated = RenderSpec("opengait-sigma15-joint8")
    store = open_cache(
        import_heatmaps(ImportConfig(tmp_path / "og", stated=stated, out=tmp_path / "s.zarr")).path
    )
    assert store.attrs["render"] == get_preset("opengait-sigma15-joint8").to_dict()
    assert store.provenance["stated"]["preset"] == "opengait-sigma15-joint8"
    assert store.provenance["described_as"] == "preset opengait-sigma15-joint8"


def test_training_takes_a_preset():
    config = apply_overrides(load_recipe("demo-cpu"), ["data.preset=opengait", "data.render.sigma_joint=6"])
    assert config.data.render_spec().resolve().to_dict() == get_preset("opengait").to_dict() | {
        "sigma_joint": 6.0
    }
    # the shorthand representation overrides the preset's
    config = apply_overrides(config, ["data.representation=body-only"])
    assert config.data.render_spec().resolve().representation.name == "body-only"
    with pytest.raises(ConfigError, match="unknown render preset"):
        apply_overrides(load_recipe("demo-cpu"), ["data.preset=nope"])


def test_cli_eval_with_a_preset_gives_the_weights_logits(small_dataset, small_split, tmp_path, sconet_cli):
    """The issue's bar: an OpenGait-format checkpoint through `sconet eval --preset ...` gives the
    logits of its weights run directly on the maps of that preset."""
    import json

    import numpy as np
    import torch

    from sconet.cache import CacheConfig, build_cache
    from sconet.models import ModelConfig, ScoNetMT
    from sconet.stream import width_cut

    store = open_cache(
        build_cache(CacheConfig(poses=small_dataset, render=get_preset("opengait-sigma15-joint8"))).path
    )
    model = ScoNetMT(ModelConfig(width=0.0625), seed=11).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10000, 14000, 18000])
    ckpt = tmp_path / "ScoNet-20000.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "iteration": 20000}, ckpt)  # fmt: skip
    done = sconet_cli("eval", ckpt, "--preset", "opengait-sigma15-joint8", "--split", small_split,
                      "--device", "cpu", "--json", "-")  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (
        doc["cache"] == str(store.path)
        and doc["render"]["source"] == "stated: preset opengait-sigma15-joint8"
    )
    assert doc["render"]["settings"] == get_preset("opengait-sigma15-joint8").to_dict()
    for entry in doc["predictions"]:
        maps = store.sequence(entry["id"])[:720]
        x = torch.from_numpy(np.ascontiguousarray(width_cut(maps, 10))).float().div_(255.0)
        with torch.inference_mode():
            direct = model(x, [x.shape[0]]).logits.float().mean(-1)[0].numpy()
        np.testing.assert_allclose(entry["logits"], direct, atol=1e-6)  # JSON: 6 decimals

"""Effective-settings diff of two ledger runs (sconet.experiments.rundiff)."""

from __future__ import annotations

from sconet.experiments.rundiff import diff_runs, effective_settings
from sconet.training import apply_overrides, load_recipe, to_toml

RENDER = {"representation": {"name": "body-only", "joints": [5, 6]}, "sigma_limb": 15.0, "geometry": "square"}


def _row(run_id, config, **extra):
    row = {
        "id": run_id,
        "recipe": config.name,
        "recipe_toml": to_toml(config),
        "render": dict(RENDER),
        "representation": "body-only",
        "dataset": "synthetic",
        "split": "Scoliosis1K_112",
        "split_key": "k1",
        "seed": config.run.seed,
        "sconet_version": "0.1.0",
        "git_commit": "abc",
        "renderer_version": "2",
        "cache_fingerprint": "f1",
    }
    row.update(extra)
    return row


def test_same_settings():
    c = load_recipe("demo-cpu")
    d = diff_runs(_row(1, c), _row(2, apply_overrides(c, [("run", "out", "elsewhere")])))
    assert d.rows == [] and d.same > 50
    assert "the same effective settings" in d.format()
    assert [
        r.key
        for r in diff_runs(
            _row(1, c), _row(2, apply_overrides(c, [("run", "out", "x")])), include_out=True
        ).rows
    ] == ["run.out"]


def test_differences_by_group():
    a = load_recipe("demo-cpu")
    b = apply_overrides(a, ["optim.lr=0.01", "run.seed=3", "run.init_from=/ckpt/best.pt"])
    render_b = {**RENDER, "representation": {"name": "full-body", "joints": [0, 1, 5, 6]}}
    d = diff_runs(
        _row(1, a),
        _row(2, b, render=render_b, representation="full-body", git_commit="def", init_sha256="ff00"),
    )
    got = {r.key: (r.group, r.a, r.b) for r in d.rows}
    assert got["optim.lr"] == ("optimisation", 3e-3, 0.01)
    assert got["run.init_from"] == ("optimisation", None, "/ckpt/best.pt")
    assert got["run.seed"][0] == "neutral" and got["seed"] == ("neutral", 0, 3)
    assert got["render.representation.name"] == ("render", "body-only", "full-body")
    assert got["render.representation.joints"] == ("render", [5, 6], [0, 1, 5, 6])
    assert got["representation"] == ("render", "body-only", "full-body")
    assert got["git_commit"] == ("provenance", "abc", "def")
    assert got["init_sha256"] == ("optimisation", None, "ff00")
    # grouped: render first, provenance last
    groups = [r.group for r in d.rows]
    assert groups.index("render") < groups.index("optimisation") < groups.index("provenance")
    text = d.format()
    assert "factor groups changed: optimisation, render" in text and "full-body" in text
    assert d.to_dict()["differences"][0]["group"] == "render"


def test_render_json_text_and_missing_recipe():
    s = effective_settings({"id": 1, "render": '{"sigma_limb": 10}', "recipe_toml": None})
    assert s["render.sigma_limb"] == ("render", 10)

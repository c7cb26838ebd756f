"""Experiment plans: parsing, factor groups, the one-factor rule (sconet.experiments.plan)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from sconet.experiments.plan import (
    FACTOR_GROUPS,
    NEUTRAL_KEYS,
    PlanError,
    StepSpec,
    candidate_config,
    changed_groups,
    check_factors,
    config_changes,
    factor_group,
    flatten_config,
    load_plan,
)
from sconet.training import SECTIONS, TrainConfig, apply_overrides, load_recipe

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(textwrap.dedent(text))
    return p


BASIC = """
    name = "demo"
    out = "runs/x"
    [rule]
    patience = 4
    [baseline]
    recipe = "demo-cpu"
    set = ["run.iters=20"]
    promote = true
    [[step]]
    name = "full-body"
    set = ["data.representation=full-body"]
    on_fail = "stop"
    [[step]]
    name = "second seed"
    from = "winner"
    set = ["run.seed=1"]
    success = "none"
    seeds = 2
"""


def test_every_config_key_has_a_factor_group():
    keys = [k for k in flatten_config(TrainConfig()) if k not in ("name", "description")]
    assert keys and all(k.split(".")[0] in SECTIONS for k in keys)
    for key in keys:
        assert factor_group(key) in (*FACTOR_GROUPS, "neutral"), key
    assert factor_group("data.representation") == "render"
    assert factor_group("model.arch") == "model"
    assert factor_group("optim.lr") == factor_group("run.init_from") == "optimisation"
    assert factor_group("data.split") == "data"
    assert factor_group("run.seed") == "neutral" and "run.seed" in NEUTRAL_KEYS
    with pytest.raises(KeyError):
        factor_group("model2.x")


def test_load_plan_reads_every_section(tmp_path):
    plan = load_plan(_write(tmp_path, BASIC))
    assert plan.name == "demo" and plan.out == Path("runs/x") and plan.rule.patience == 4
    assert (
        plan.baseline.recipe == "demo-cpu" and plan.baseline.promote and plan.baseline.set == ["run.iters=20"]
    )
    a, b = plan.steps
    assert (a.name, a.on_fail, a.from_, a.success, a.seeds) == ("full-body", "stop", "baseline", "beats", 1)
    assert (b.from_, b.success, b.seeds, b.on_fail) == ("winner", "none", 2, "continue")
    assert plan.to_dict()["steps"][1]["from_"] == "winner"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('[[step]]\nname = "full-body"', '[[step]]\nname = "full-body"\nsuccess = "maybe"'), "success"),
        (('on_fail = "stop"', 'on_fail = "explode"'), "on_fail"),
        (("seeds = 2", "seeds = 0"), "seeds must be >= 1"),
        (("patience = 4", "patience = 1"), "patience must be >= 2"),
        (("patience = 4", 'patience = "4"'), "patience: expected int"),
        (('set = ["run.seed=1"]', 'set = ["run.out=/tmp/x"]'), "through the plan"),
        (('set = ["run.seed=1"]', 'set = ["seed"]'), "expected section.key=value"),
        (('from = "winner"', 'from = "yesterday"'), "from"),
        (('on_fail = "stop"', 'on_fail = "stop"\nbogus = 1'), "unknown key 'bogus'"),
        (('name = "second seed"', 'name = "full-body"'), "two steps have this name"),
        (('recipe = "demo-cpu"', 'checkpoint = "x.pt"'), "promote = true is for a baseline the plan trains"),
        (("patience = 4", "patience = 4\nlevel = 1.0"), "needs 0 < level < 1 and resamples >= 100"),
        (("patience = 4", "patience = 4\nresamples = 99"), "needs 0 < level < 1 and resamples >= 100"),
        (("patience = 4", "patience = 4\nlevel = 0.99\nresamples = 100"), None),
    ],
)
def test_bad_plans_are_refused_with_the_file_named(tmp_path, edit, message):
    old, new = edit
    text = textwrap.dedent(BASIC)
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    if message is None:  # the edge of the allowed range
        load_plan(path)
        return
    with pytest.raises(PlanError, match=message) as info:
        load_plan(path)
    assert str(path) in str(info.value)


def test_refusals_read_in_full(tmp_path):
    text = textwrap.dedent(BASIC).replace('on_fail = "stop"', 'on_fail = "explode"', 1)
    path = _write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: step 'full-body': on_fail: 'explode' is not one of continue, stop"
    base = load_recipe("adamw-cosine")
    two = StepSpec(
        name="both", set=["data.representation=full-body", "optim.lr=1e-5", "optim.weight_decay=0"]
    )
    with pytest.raises(PlanError) as info:
        check_factors(base, candidate_config(base, two, init=None), two, where="plan.toml: ")
    assert str(info.value) == (
        "plan.toml: step 'both' changes 2 factor groups (render: data.representation; optimisation: "
        "optim.lr, optim.weight_decay); a controlled comparison changes one. Split it into steps, or set "
        "allow_multi = true in the step"
    )


def test_missing_sections_and_bad_toml(tmp_path):
    with pytest.raises(PlanError, match="needs a \\[baseline\\]"):
        load_plan(_write(tmp_path, "[[step]]\nname = 'x'\n"))
    with pytest.raises(PlanError, match="at least one \\[\\[step\\]\\]"):
        load_plan(_write(tmp_path, "[baseline]\nrecipe = 'sgd'\n"))
    with pytest.raises(PlanError, match="needs a checkpoint"):
        load_plan(_write(tmp_path, "[baseline]\n[[step]]\nname = 'x'\n"))
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(_write(tmp_path, "[baseline\n"))
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.toml")


def test_one_factor_rule():
    base = load_recipe("adamw-cosine")
    one = StepSpec(name="full-body", set=["data.representation=full-body"])
    cand = candidate_config(base, one, init=None)
    assert check_factors(base, cand, one) == {"render": ["data.representation"]}
    # preprocessing and optimiser at once: refused, unless allowed
    two = StepSpec(name="both", set=["data.representation=full-body", "optim.lr=1e-5"])
    cand2 = candidate_config(base, two, init=None)
    with pytest.raises(
        PlanError, match="changes 2 factor groups .*render: data.representation.*optimisation: optim.lr"
    ):
        check_factors(base, cand2, two)
    allowed = dataclasses.replace(two, allow_multi=True)
    assert set(check_factors(base, cand2, allowed)) == {"render", "optimisation"}
    # a new seed is a repeat, not a factor
    seed = StepSpec(name="seed", set=["run.seed=7"])
    assert check_factors(base, candidate_config(base, seed, init=None), seed) == {}
    # init_from: baseline / none set run.init_from; keep leaves it
    warm = StepSpec(name="warm", set=[], init_from="baseline")
    assert candidate_config(base, warm, init="/x/best.pt").run.init_from == "/x/best.pt"
    keep = candidate_config(load_recipe("adamw-cosine"), StepSpec(name="k"), init="/ignored.pt")
    assert keep.run.init_from is None
    bad = StepSpec(name="bad", set=["optim.nope=1"])
    with pytest.raises(PlanError, match="step 'bad'.*optim.nope"):
        candidate_config(base, bad, init=None)


def test_config_changes_lists_both_values():
    a, b = load_recipe("sgd"), load_recipe("adamw-cosine")
    changes = config_changes(a, b)
    assert changes["optim.name"] == ("sgd", "adamw")
    assert "model.width" not in changes
    assert set(changed_groups(changes)) == {"optimisation"}  # description differs too: neutral


@pytest.mark.parametrize("name", ["next-experiments.toml", "next-experiments-tiny.toml"])
def test_shipped_plans_are_one_factor_steps(name):
    """The shipped plans: every enabled step changes one factor group, except the DRF warm start
    (model + optimisation, allowed explicitly), checked against the recipe each one builds on."""
    plan = load_plan(REPO / "experiments" / name)
    base = load_recipe(plan.baseline.recipe or "adamw-cosine")
    base = apply_overrides(base, plan.baseline.set)
    groups = {s.name: check_factors(base, candidate_config(base, s, init="/ckpt.pt"), s) for s in plan.steps}
    assert groups["full-body control"] == {"render": ["data.representation"]}
    assert set(groups["DRF warm-start"]) == {"model", "optimisation"}
    assert "run.init_from" in groups["DRF warm-start"]["optimisation"]
    assert groups["optimizer confirmation (second seed)"] == {}
    steps = {s.name: s for s in plan.steps}
    assert steps["DRF warm-start"].allow_multi and steps["DRF warm-start"].init_from == "baseline"
    if name == "next-experiments.toml":
        assert plan.baseline.checkpoint == "promoted" and plan.rule.patience == 3
        assert set(groups["SGD continuation vs AdamW cosine"]) == {"optimisation"}
        assert not steps["SGD continuation vs AdamW cosine"].enabled
        drf = candidate_config(base, steps["DRF warm-start"], init="/ckpt.pt")
        assert (drf.model.arch, drf.optim.lr, drf.run.freeze, drf.run.freeze_iters) == (
            "drf",
            5e-5,
            "backbone",
            1000,
        )
    else:
        assert plan.device == "cpu" and plan.baseline.promote
        bad = steps["deliberately bad: positives-only training set"]
        assert groups[bad.name] == {"data": ["data.split"]} and bad.stop_rule
        split = Path(candidate_config(base, bad, init=None).data.split)  # anchored at the plan's folder
        assert split.is_absolute() and split.is_file() and split.name == "Scoliosis1K_112.json"

"""Experiment plans: a baseline and an ordered list of controlled candidates, read from TOML.

A plan (``sconet experiment run PLAN.toml``) names a **baseline** (a checkpoint, the promoted
one, or a recipe it trains first) and **steps**. Each step is written as changes from the
baseline's configuration (``set = ["section.key=value", ...]``, the ``--set`` syntax) or from the
plan's current winner (``from = "winner"``). Before anything runs, every candidate's changes are
sorted into the factor groups of :data:`FACTOR_GROUPS` (render, model, optimisation, data); a
candidate that touches more than one group is refused unless the step says ``allow_multi = true``
(the seed's "do not change preprocessing and optimizer at the same time"). Keys in
:data:`NEUTRAL_KEYS` (seed, output folder, device, cadences ...) belong to no group.

Paths inside ``set`` (``data.split``, ``data.poses``, ``data.cache``, ``run.init_from``) that are
relative and exist next to the plan file are read from there; ``out``, ``ledger`` and
``artifact_dir`` are relative to the current folder.

Plan format (every key but ``[baseline]`` and one ``[[step]]`` is optional)::

    name = "next-experiments"
    out = "runs/next-experiments"       # run folders and the report (relative to the current folder)
    ledger = "runs/ledger.sqlite"       # default: $SCONET_LEDGER or runs/ledger.sqlite
    artifact_dir = "artifact"
    device = "auto"
    promote_winner = true               # `sconet promote` the winner at the end
    require_significant = false         # ... only if its F1 gain's interval excludes 0

    [rule]                              # the stop rule, checked at every in-run evaluation
    patience = 3                        # evaluations whose F1 upper bound must be below the reference
    level = 0.95
    resamples = 2000

    [baseline]
    checkpoint = "promoted"             # or a path; or leave it out and give recipe = "..." to train it
    split_key = "..."                   # which promoted checkpoint, when artifact/ holds several splits
    recipe = "adamw-cosine"             # what candidates change (default: the checkpoint's recipe)
    set = ["data.split=..."]
    promote = false                     # promote the trained baseline first (it becomes the reference)

    [[step]]
    name = "full-body control"
    set = ["data.representation=full-body"]
    from = "baseline"                   # or "winner": changes apply to the current winner's configuration
    init_from = "keep"                  # keep | none | baseline | winner | a checkpoint path
    allow_multi = false
    seeds = 1                           # > 1: the same candidate with seeds seed, seed+1, ...
    success = "beats"                   # beats | significant | none
    on_fail = "continue"                # continue | stop (end the plan when the step fails)
    stop_rule = true
    enabled = true
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sconet.training.config import SECTIONS, ConfigError, TrainConfig
from sconet.training.recipes import apply_overrides, parse_override

__all__ = [
    "FACTOR_GROUPS",
    "NEUTRAL_KEYS",
    "SUCCESS",
    "ON_FAIL",
    "INIT_FROM",
    "PlanError",
    "RuleSpec",
    "BaselineSpec",
    "StepSpec",
    "Plan",
    "factor_group",
    "flatten_config",
    "config_changes",
    "changed_groups",
    "candidate_config",
    "check_factors",
    "load_plan",
]

FACTOR_GROUPS: Mapping[str, tuple[str, ...]] = {
    "render": (
        "data.representation",
        "data.preset",
        "data.render",
        "data.cache",
        "data.cut",
        "data.cut_pixels",
    ),
    "model": ("model.*",),
    "optimisation": (
        "optim.*",
        "schedule.*",
        "loss.*",
        "run.iters",
        "run.amp",
        "run.init_from",
        "run.init_class_order",
        "run.freeze",
        "run.freeze_iters",
        "run.sync_bn",
    ),
    "data": (
        "data.poses",
        "data.split",
        "data.val_fraction",
        "data.p",
        "data.k",
        "data.frames",
        "data.eval_max_frames",
    ),
}
"""What a candidate may change, by group; ``section.*`` covers a whole section."""

NEUTRAL_KEYS: tuple[str, ...] = (
    "name",
    "description",
    "run.seed",
    "run.out",
    "run.device",
    "run.save_iter",
    "run.eval_iter",
    "run.keep_n",
    "run.log_iter",
    "run.ledger",
    "run.eval_test",
    "run.require_init",
    "run.ci_resamples",
    "run.memory_check",
    "data.num_workers",
    "data.eval_batch",
    "data.max_ram_gb",
)
"""Keys that change how a run is carried out or repeated, not what is tested."""

SUCCESS = ("beats", "significant", "none")
ON_FAIL = ("continue", "stop")
INIT_FROM = ("keep", "none", "baseline", "winner")


class PlanError(ValueError):
    """A plan that cannot be run (the message starts with the plan file)."""


def factor_group(key: str) -> str:
    """The group of a ``section.key`` (``"neutral"`` for :data:`NEUTRAL_KEYS`)."""
    if key in NEUTRAL_KEYS:
        return "neutral"
    for group, patterns in FACTOR_GROUPS.items():
        if any(fnmatch.fnmatchcase(key, p) for p in patterns):
            return group
    raise KeyError(f"{key} belongs to no factor group")


def flatten_config(config: TrainConfig | Mapping[str, Any]) -> dict[str, Any]:
    """``{"section.key": value}`` of a config (plus ``name`` and ``description``)."""
    d = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    out: dict[str, Any] = {k: d[k] for k in ("name", "description") if k in d}
    for section in SECTIONS:
        for key, value in (d.get(section) or {}).items():
            out[f"{section}.{key}"] = value
    return out


def config_changes(base: TrainConfig, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ: ``{key: (base value, other value)}``."""
    a, b = flatten_config(base), flatten_config(other)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def changed_groups(changes: Mapping[str, Any]) -> dict[str, list[str]]:
    """The factor groups touched by ``changes`` (neutral keys left out)."""
    groups: dict[str, list[str]] = {}
    for key in changes:
        group = factor_group(key)
        if group != "neutral":
            groups.setdefault(group, []).append(key)
    return groups


# ----------------------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------------------


@dataclass
class RuleSpec:
    """The stop rule's settings (see :func:`sconet.evaluation.stats.stop_rule`)."""

    patience: int = 3
    level: float = 0.95
    resamples: int = 2000


@dataclass
class BaselineSpec:
    """``checkpoint``: a path, ``"promoted"`` or ``None`` (train ``recipe`` + ``set`` first)."""

    checkpoint: str | None = None
    split_key: str | None = None
    recipe: str | None = None
    set: list[str] = field(default_factory=list)
    promote: bool = False


@dataclass
class StepSpec:
    """One candidate (see the module docstring for the keys)."""

    name: str
    set: list[str] = field(default_factory=list)
    from_: str = "baseline"
    init_from: str = "keep"
    allow_multi: bool = False
    seeds: int = 1
    success: str = "beats"
    on_fail: str = "continue"
    stop_rule: bool = True
    enabled: bool = True
    note: str = ""


@dataclass
class Plan:
    """A parsed, checked plan."""

    path: Path
    name: str
    description: str = ""
    out: Path = Path("runs/experiment")
    ledger: str | None = None
    artifact_dir: Path = Path("artifact")
    device: str = "auto"
    promote_winner: bool = True
    require_significant: bool = False
    rule: RuleSpec = field(default_factory=RuleSpec)
    baseline: BaselineSpec = field(default_factory=BaselineSpec)
    steps: list[StepSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"], d["out"], d["artifact_dir"] = str(self.path), str(self.out), str(self.artifact_dir)
        return d


def _table(
    doc: Mapping[str, Any],
    spec: type,
    where: str,
    rename: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Keyword arguments of ``spec`` from a TOML table; unknown keys and wrong types are named."""
    rename = dict(rename or {})
    display = {v: k for k, v in rename.items()}
    fields = {f.name: f for f in dataclasses.fields(spec) if f.name not in exclude}
    known = ", ".join(sorted(display.get(f, f) for f in fields))
    values: dict[str, Any] = {}
    for key, value in doc.items():
        name = rename.get(key, key)
        if name not in fields or (name in display and key not in rename):
            raise PlanError(f"{where}: unknown key {key!r}; known: {known}")
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        expected = str if default is None or default is dataclasses.MISSING else type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PlanError(f"{where}: {key}: expected a list of strings, got {value!r}")
        elif isinstance(default, Path):
            if not isinstance(value, str):
                raise PlanError(f"{where}: {key}: expected a path string, got {value!r}")
            value = Path(value)
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise PlanError(f"{where}: {key}: expected {expected.__name__}, got {value!r}")
        values[name] = value
    return values


def _choice(value: str, options: Sequence[str], where: str) -> None:
    if value not in options:
        raise PlanError(f"{where}: {value!r} is not one of {', '.join(options)}")


PATH_KEYS = ("data.split", "data.poses", "data.cache", "run.init_from")
"""``set`` keys whose relative paths are looked up next to the plan file first."""


def _anchor(overrides: list[str], folder: Path) -> list[str]:
    """``set`` entries with relative :data:`PATH_KEYS` paths that exist under ``folder`` made absolute."""
    out = []
    for text in overrides:
        section, key, value = parse_override(text)
        if f"{section}.{key}" in PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute():
            candidate = folder / value
            if candidate.exists():
                text = f"{section}.{key}={json.dumps(str(candidate.resolve()))}"
        out.append(text)
    return out


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan file (see the module docstring); raises :class:`PlanError`."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML ({exc})") from None
    doc = dict(doc)
    baseline_doc = doc.pop("baseline", None)
    steps_doc = doc.pop("step", None)
    rule_doc = doc.pop("rule", {})
    if not isinstance(baseline_doc, dict):
        raise PlanError(f"{path}: the plan needs a [baseline] table")
    if not isinstance(steps_doc, list) or not steps_doc:
        raise PlanError(f"{path}: the plan needs at least one [[step]]")
    top = _table({"name": path.stem, **doc}, Plan, str(path), exclude=("path", "rule", "baseline", "steps"))
    plan = Plan(path=path, **top)
    plan.rule = RuleSpec(**_table(rule_doc, RuleSpec, f"{path}: [rule]"))
    plan.baseline = BaselineSpec(**_table(baseline_doc, BaselineSpec, f"{path}: [baseline]"))
    if plan.rule.patience < 2:
        raise PlanError(f"{path}: [rule] patience must be >= 2, got {plan.rule.patience}")
    if not 0 < plan.rule.level < 1 or plan.rule.resamples < 100:
        raise PlanError(f"{path}: [rule] needs 0 < level < 1 and resamples >= 100")
    b = plan.baseline
    if b.checkpoint is None and b.recipe is None:
        raise PlanError(f'{path}: [baseline] needs a checkpoint (a path or "promoted") or a recipe to train')
    if b.checkpoint is not None and b.promote:
        raise PlanError(
            f"{path}: [baseline] promote = true is for a baseline the plan trains, not a checkpoint"
        )
    names = set()
    for i, raw in enumerate(steps_doc, 1):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"].strip():
            raise PlanError(f"{path}: [[step]] number {i} needs a name")
        where = f"{path}: step {raw['name']!r}"
        step = StepSpec(**_table(raw, StepSpec, where, rename={"from": "from_"}))
        if step.name in names:
            raise PlanError(f"{where}: two steps have this name")
        names.add(step.name)
        _choice(step.from_, ("baseline", "winner"), f"{where}: from")
        _choice(step.success, SUCCESS, f"{where}: success")
        _choice(step.on_fail, ON_FAIL, f"{where}: on_fail")
        if step.seeds < 1:
            raise PlanError(f"{where}: seeds must be >= 1, got {step.seeds}")
        for text in step.set:
            try:
                section, key, _ = parse_override(text)
            except ConfigError as exc:
                raise PlanError(f"{where}: {exc}") from None
            if f"{section}.{key}" in ("run.out", "run.init_from"):
                raise PlanError(f"{where}: set {section}.{key} through the plan (out / init_from), not set")
        step.set = _anchor(step.set, path.parent)
        plan.steps.append(step)
    try:
        plan.baseline.set = _anchor(plan.baseline.set, path.parent)
    except ConfigError as exc:
        raise PlanError(f"{path}: [baseline] set: {exc}") from None
    return plan


# ----------------------------------------------------------------------------------------------
# candidates
# ----------------------------------------------------------------------------------------------


def candidate_config(base: TrainConfig, step: StepSpec, *, init: str | None, where: str = "") -> TrainConfig:
    """``base`` with the step's ``set`` applied and ``run.init_from`` set to ``init`` (the
    checkpoint the plan resolved for ``step.init_from``; ``None`` for ``"none"``; ``base``'s own
    for ``"keep"``)."""
    try:
        config = apply_overrides(base, step.set)
        if step.init_from != "keep":
            config = apply_overrides(config, [("run", "init_from", init)])
    except ConfigError as exc:
        raise PlanError(f"{where}step {step.name!r}: {exc}") from None
    return config


def check_factors(
    base: TrainConfig, candidate: TrainConfig, step: StepSpec, where: str = ""
) -> dict[str, list[str]]:
    """The groups the candidate changes; :class:`PlanError` when it changes several without
    ``allow_multi`` (or none but neutral keys and a new seed: a repeat is fine)."""
    groups = changed_groups(config_changes(base, candidate))
    if len(groups) > 1 and not step.allow_multi:
        listing = "; ".join(f"{g}: {', '.join(keys)}" for g, keys in groups.items())
        raise PlanError(
            f"{where}step {step.name!r} changes {len(groups)} factor groups ({listing}); a controlled "
            "comparison changes one. Split it into steps, or set allow_multi = true in the step"
        )
    return groups

"""``sconet runs diff A B``: how two recorded runs were configured differently.

The effective settings of a run are read from its ledger row (:mod:`sconet.experiments.ledger`): the resolved
recipe (after ``base =`` inheritance and every ``--set``, as the run wrote it), the render
settings and renderer version of the cache it trained on, the dataset, split and test-id key,
the warm-start checkpoint (path and, when recorded, sha256), the seed, and the sconet version and
git commit. Each differing key is given its factor group
(:func:`sconet.experiments.plan.factor_group`; ``render`` for the cache's render settings,
``provenance`` for versions and the cache fingerprint).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sconet.experiments.plan import factor_group, flatten_config

__all__ = ["DiffRow", "RunDiff", "effective_settings", "diff_runs"]

_PROVENANCE = ("sconet_version", "git_commit", "renderer_version", "cache_fingerprint")
_DATA = ("dataset", "split", "split_key")


@dataclass(frozen=True)
class DiffRow:
    key: str
    group: str
    a: Any
    b: Any


@dataclass
class RunDiff:
    """Differences between runs ``a`` and ``b`` (ids), and the number of equal settings."""

    a: int
    b: int
    rows: list[DiffRow] = field(default_factory=list)
    same: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "same": self.same, "differences": [asdict(r) for r in self.rows]}

    def format(self) -> str:
        if not self.rows:
            return f"runs #{self.a} and #{self.b}: the same effective settings ({self.same} compared)"

        def text(v: Any) -> str:
            return "-" if v is None else (v if isinstance(v, str) else json.dumps(v))

        cells = [(r.key, r.group, text(r.a), text(r.b)) for r in self.rows]
        head = ("setting", "group", f"run #{self.a}", f"run #{self.b}")
        widths = [min(60, max(len(h), *(len(c[i]) for c in cells))) for i, h in enumerate(head)]

        def line(c: tuple[str, ...]) -> str:
            return "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip()

        groups = sorted({r.group for r in self.rows if r.group not in ("neutral", "provenance")})
        out = [line(head), line(tuple("-" * w for w in widths)), *(line(c) for c in cells)]
        out.append(
            f"\n{len(self.rows)} setting(s) differ, {self.same} equal; factor groups changed: "
            f"{', '.join(groups) if groups else 'none'}"
        )
        return "\n".join(out)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def effective_settings(row: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """``{key: (group, value)}`` of a ledger run row (:meth:`sconet.experiments.ledger.Ledger.run_row`)."""
    out: dict[str, tuple[str, Any]] = {}
    recipe_toml = row.get("recipe_toml")
    if recipe_toml:
        try:
            recipe = flatten_config(tomllib.loads(recipe_toml))
        except tomllib.TOMLDecodeError:
            recipe = {}
        for key, value in recipe.items():
            try:
                group = factor_group(key)
            except KeyError:
                group = "other"
            out[key] = (group, value)
        out.setdefault("run.init_from", ("optimisation", None))  # TOML leaves out None values
    out["recipe"] = ("neutral", row.get("recipe"))
    render = row.get("render")
    if isinstance(render, str):
        render = json.loads(render)
    flat: dict[str, Any] = {}
    _flatten("render", render or {}, flat)
    for key, value in flat.items():
        out[key] = ("render", value)
    out["representation"] = ("render", row.get("representation"))
    for key in _DATA:
        out[key] = ("data", row.get(key))
    for key in _PROVENANCE:
        out[key] = ("provenance", row.get(key))
    if "init_sha256" in row:
        out["init_sha256"] = ("optimisation", row.get("init_sha256"))
    out["seed"] = ("neutral", row.get("seed"))
    return out


def diff_runs(row_a: Mapping[str, Any], row_b: Mapping[str, Any], *, include_out: bool = False) -> RunDiff:
    """The settings that differ between two ledger run rows (``run.out`` only with ``include_out``)."""
    a, b = effective_settings(row_a), effective_settings(row_b)
    result = RunDiff(int(row_a.get("id") or 0), int(row_b.get("id") or 0))
    skip = set() if include_out else {"run.out", "run.ledger"}
    for key in sorted(set(a) | set(b)):
        if key in skip:
            continue
        ga, va = a.get(key, ("", None))
        gb, vb = b.get(key, ("", None))
        if va == vb:
            result.same += 1
        else:
            result.rows.append(DiffRow(key, ga or gb, va, vb))
    order = {"render": 0, "model": 1, "optimisation": 2, "data": 3, "neutral": 4, "provenance": 5}
    result.rows.sort(key=lambda r: (order.get(r.group, 6), r.key))
    return result

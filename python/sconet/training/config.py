"""Training configuration: :class:`TrainConfig`, named recipes and ``--set section.key=value``.

A recipe is a TOML file with the sections of :class:`TrainConfig` (``model``, ``data``,
``optim``, ``schedule``, ``loss``, ``run``). Named recipes ship in ``sconet/recipes/``
(:func:`list_recipes`); :func:`load_recipe` accepts a name or a path. A recipe may start from
another one with a top-level ``base = "<name or path>"`` and change only some keys (paths are
relative to the file that names them).

Every field can be overridden with :func:`apply_overrides` (the CLI's repeatable
``--set section.key=value``): the value is parsed as a TOML literal (``0.1``, ``true``,
``[1, 2]``, ``"text"``); a bare word that is not valid TOML is taken as a string
(``--set optim.name=sgd``). Unknown sections or keys and values of the wrong type raise
:class:`ConfigError` with the list of known names.

The model section is :class:`sconet.models.ModelConfig` itself (validated there).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sconet.models import ModelConfig
from sconet.models.losses import LOSSES
from sconet.render.spec import RenderSpec
from sconet.training.optim import OPTIMIZERS, SCHEDULES
from sconet.training.warmstart import FREEZE_MODES


class ConfigError(ValueError):
    """A recipe or an override that cannot be used (unknown key, wrong type, bad file)."""


class TrainError(ValueError):
    """A run that cannot start or continue (bad folder, missing cache or split, ...)."""


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the skeleton maps come from and how batches are drawn.

    - The render settings of the maps (:meth:`render_spec`): ``preset`` (a named preset of
      :mod:`sconet.render`, or ``None`` = :class:`sconet.render.RenderConfig`'s defaults), then
      ``render`` (a ``[data.render]`` table of :class:`RenderConfig` fields, e.g.
      ``sigma_limb = 12.0``; ``--set data.render.sigma_limb=12``) overriding the preset's, then
      ``representation`` (a shorthand for ``render.representation``) overriding both. The run
      finds the store with these settings (:func:`sconet.cache.find_cache`) or builds it first.
      ``cache``: an explicit store path instead. ``poses``: the dataset root (``None`` = the
      built-in synthetic Scoliosis1K).
    - ``split``: OpenGait split JSON (default for the synthetic data: its
      ``Scoliosis1K_112.json``; required with real data). ``val_fraction``: carve a stratified
      validation set from the training ids (0 = none).
    - ``p`` x ``k``: ids per batch x samples per id; ``frames``: frames per training sample
      (random, without replacement when the sequence is long enough).
    - ``eval_max_frames``: first frames of each sequence used at evaluation;
      ``eval_batch``: sequences per evaluation batch.
    - ``cut`` / ``cut_pixels``: the runtime width cut (64 -> 44 drops 10 columns each side).
    - ``max_ram_gb``: frames held in RAM (uint8) up to this size; above it, batches read
      per-sequence chunks from the Zarr store instead.
    - ``num_workers``: DataLoader worker processes producing batches (0 = in the main process).
    """

    representation: str | None = None
    preset: str | None = None
    render: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None
    poses: str | None = None
    split: str | None = None
    val_fraction: float = 0.0
    p: int = 8
    k: int = 8
    frames: int = 30
    eval_max_frames: int = 720
    eval_batch: int = 8
    cut: bool = True
    cut_pixels: int = 10
    max_ram_gb: float = 16.0
    num_workers: int = 0

    def render_spec(self) -> RenderSpec:
        """What the recipe states about the maps (preset, ``[data.render]``, ``representation``)."""
        settings = dict(self.render)
        if self.representation is not None:
            settings["representation"] = self.representation
        return RenderSpec(self.preset, settings)


@dataclass
class OptimConfig:
    """Optimiser: ``name`` ``"sgd"`` or ``"adamw"``; ``grad_clip`` (global norm, 0 = off)."""

    name: str = "adamw"
    lr: float = 2e-4
    weight_decay: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 0.0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over ``run.iters`` iterations.

    ``name``: ``"cosine"`` (from lr down to ``lr * min_lr_ratio``), ``"multistep"`` (times
    ``gamma`` at each of ``milestones``) or ``"constant"``; ``warmup_iters``: linear warm-up
    from ``lr * warmup_start`` (any schedule).
    """

    name: str = "cosine"
    warmup_iters: int = 0
    warmup_start: float = 0.01
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0


@dataclass
class LossConfig:
    """Triplet + cross-entropy (:class:`sconet.models.ScoNetLoss`).

    ``class_weights``: ``"none"``, ``"inverse"`` (inverse frequency of the training labels) or
    an explicit list of 3 weights.
    """

    triplet_weight: float = 1.0
    ce_weight: float = 1.0
    margin: float = 0.2
    scale: float = 16.0
    label_smoothing: float = 0.1
    class_weights: str | list[float] = "none"
    include_self_pairs: bool = True


@dataclass
class RunConfig:
    """The run: length, seed, device, checkpointing and evaluation cadence.

    - ``iters``: total iterations; ``seed``: every random choice (weights, batches).
    - ``device``: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    - ``amp``: bf16 autocast on CUDA (always off on CPU).
    - ``save_iter``: ``last.pt`` every so many iterations (and at the end); ``eval_iter``:
      evaluate (and keep the best ``keep_n`` checkpoints per metric) every so many iterations
      and at the end; ``log_iter``: loss logging cadence.
    - ``out``: run folder; ``init_from``: warm start from a sconet or OpenGait checkpoint
      (weights only); ``init_class_order``: class order of a foreign ``init_from`` file.
    - ``eval_test``: evaluate on the test ids during the run (``test_*`` metrics).
    - ``require_init``: the recipe is a warm start: refuse to start without ``init_from``
      (``drf-warmstart``; a resumed run is exempt, its weights come from ``last.pt``).
    - ``freeze``: parameters held fixed for the first ``freeze_iters`` iterations, then trained
      with the rest: ``"none"``, ``"backbone"`` (the ResNet) or ``"backbone+fcs"`` (and the
      separate FCs). Frozen means no gradient, no optimiser update (no AdamW weight decay
      either) and, for their BatchNorm layers, eval mode (running statistics unchanged).
    - ``ledger``: the run ledger (SQLite, :mod:`sconet.experiments`) this run is recorded in;
      ``None`` = ``$SCONET_LEDGER`` or ``runs/ledger.sqlite``, ``"none"`` = not recorded.
    - ``memory_check``: estimate the run's peak memory first and refuse to start when it clearly
      will not fit (:mod:`sconet.training.memory`; the CLI's ``--no-memory-check`` turns it off).
    - ``sync_bn``: under torchrun (several processes), synchronise every BatchNorm across the
      ranks (:mod:`sconet.training.syncbn`), as OpenGait's ``trainer_cfg.sync_BN``; without it
      each process keeps its own statistics. On in ``sgd`` (OpenGait's ScoNet config) and the
      recipes based on it; no effect on one process.
    - ``ci_resamples``: bootstrap resamples of the 95 % intervals of each in-run test evaluation
      (``test_f1_low`` / ``test_f1_high``, ``test_accuracy_low`` / ``_high``); 0 = none.
    """

    iters: int = 40000
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    save_iter: int = 500
    eval_iter: int = 1000
    keep_n: int = 3
    log_iter: int = 50
    out: str | None = None
    init_from: str | None = None
    init_class_order: str = "2025"
    eval_test: bool = True
    require_init: bool = False
    freeze: str = "none"
    freeze_iters: int = 0
    ledger: str | None = None
    memory_check: bool = True
    sync_bn: bool = False
    ci_resamples: int = 2000


@dataclass
class TrainConfig:
    """A complete, resolved training recipe."""

    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/TOML friendly; ``None`` values kept)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        for name in SECTIONS:
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return config_from_dict(data)

    def validate(self) -> TrainConfig:
        """Check value ranges and choices; returns ``self`` (raises :class:`ConfigError`)."""
        d, o, s, ls, r = self.data, self.optim, self.schedule, self.loss, self.run
        try:
            d.render_spec().resolve()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"data.render / data.preset: {exc}") from None
        checks = [
            (d.p >= 1 and d.k >= 1, f"data.p and data.k must be >= 1, got {d.p} x {d.k}"),
            (d.frames >= 1, f"data.frames must be >= 1, got {d.frames}"),
            (d.eval_max_frames >= 1, f"data.eval_max_frames must be >= 1, got {d.eval_max_frames}"),
            (d.eval_batch >= 1, f"data.eval_batch must be >= 1, got {d.eval_batch}"),
            (0 <= d.cut_pixels < 32, f"data.cut_pixels must be in [0, 32), got {d.cut_pixels}"),
            (0.0 <= d.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {d.val_fraction}"),
            (d.max_ram_gb >= 0, f"data.max_ram_gb must be >= 0, got {d.max_ram_gb}"),
            (d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}"),
            (o.name in OPTIMIZERS, f"optim.name must be one of {_choices(OPTIMIZERS)}, got {o.name!r}"),
            (o.lr > 0 and math.isfinite(o.lr), f"optim.lr must be a positive number, got {o.lr}"),
            (o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}"),
            (len(o.betas) == 2, f"optim.betas must have 2 values, got {o.betas}"),
            (o.grad_clip >= 0, f"optim.grad_clip must be >= 0, got {o.grad_clip}"),
            (s.name in SCHEDULES, f"schedule.name must be one of {_choices(SCHEDULES)}, got {s.name!r}"),
            (s.warmup_iters >= 0, f"schedule.warmup_iters must be >= 0, got {s.warmup_iters}"),
            (0.0 <= s.min_lr_ratio <= 1.0, f"schedule.min_lr_ratio must be in [0, 1], got {s.min_lr_ratio}"),
            (
                list(s.milestones) == sorted(s.milestones),
                f"schedule.milestones must be increasing, got {s.milestones}",
            ),
            (
                isinstance(ls.class_weights, list)
                and len(ls.class_weights) == self.model.num_classes
                or ls.class_weights in ("none", "inverse"),
                f"loss.class_weights must be 'none', 'inverse' or a list of "
                f"{self.model.num_classes} numbers, got {ls.class_weights!r}",
            ),
            (all(getattr(ls, f"{n}_weight") >= 0 for n in LOSSES), "loss weights must be >= 0"),
            (r.iters >= 1, f"run.iters must be >= 1, got {r.iters}"),
            (r.save_iter >= 1, f"run.save_iter must be >= 1, got {r.save_iter}"),
            (r.eval_iter >= 1, f"run.eval_iter must be >= 1, got {r.eval_iter}"),
            (r.keep_n >= 0, f"run.keep_n must be >= 0, got {r.keep_n}"),
            (r.log_iter >= 1, f"run.log_iter must be >= 1, got {r.log_iter}"),
            (
                r.device == "auto" or r.device == "cpu" or r.device.startswith("cuda"),
                f"run.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {r.device!r}",
            ),
            (
                r.init_class_order in ("2024", "2025"),
                f"run.init_class_order must be '2024' or '2025', got {r.init_class_order!r}",
            ),
            (
                r.freeze in FREEZE_MODES,
                f"run.freeze must be one of {_choices(FREEZE_MODES)}, got {r.freeze!r}",
            ),
            (r.freeze_iters >= 0, f"run.freeze_iters must be >= 0, got {r.freeze_iters}"),
            (r.ci_resamples >= 0, f"run.ci_resamples must be >= 0, got {r.ci_resamples}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


def _choices(names: Iterable[str]) -> str:
    return ", ".join(map(repr, names))


SECTIONS: tuple[str, ...] = ("model", "data", "optim", "schedule", "loss", "run")
_SECTION_TYPES: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "loss": LossConfig,
    "run": RunConfig,
}
_TOP_LEVEL = ("name", "description")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# typed values
# ----------------------------------------------------------------------------------------------


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against ``annotation`` (int -> float allowed; lists for tuples)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(annotation)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list ({_type_name(annotation)}), got {value!r}")
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table of keys, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build_section(section: str, values: Mapping[str, Any], base: Any = None) -> Any:
    cls = _SECTION_TYPES[section]
    known = {f.name for f in dataclasses.fields(cls)}
    if base is None:
        base = cls()
    values = _merge_tables(section, values, base, _hints(cls))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            + ", ".join(f"{section}.{k}" for k in unknown)
            + f"; known keys of [{section}]: {', '.join(sorted(known))}"
        )
    hints = _hints(cls)
    coerced = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    try:
        return dataclasses.replace(base, **coerced)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


def _merge_tables(
    section: str, values: Mapping[str, Any], base: Any, hints: dict[str, Any]
) -> dict[str, Any]:
    """Table fields (``dict``, e.g. ``data.render``) are merged key by key into ``base``'s, and
    ``"render.sigma_limb"`` (from ``--set data.render.sigma_limb=...``) is one key of ``render``."""
    out: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        name, _, sub = key.partition(".")
        if typing.get_origin(hints.get(name)) is not dict:
            out[key] = value
            continue
        table = tables.setdefault(name, dict(getattr(base, name)))
        if sub:
            table[sub] = value
        elif isinstance(value, Mapping):
            table.update(value)
        else:
            raise ConfigError(f"{section}.{name}: expected a table of keys, got {value!r}")
    return {**out, **tables}


def config_from_dict(data: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a nested dict (missing keys keep ``base``'s / the defaults)."""
    config = dataclasses.replace(base) if base is not None else TrainConfig()
    unknown = sorted(set(data) - set(SECTIONS) - set(_TOP_LEVEL) - {"base"})
    if unknown:
        raise ConfigError(
            f"unknown section{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known: {', '.join(SECTIONS)} (and top-level name, description, base)"
        )
    for key in _TOP_LEVEL:
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{key}: expected a string, got {data[key]!r}")
            setattr(config, key, data[key])
    for section in SECTIONS:
        if section in data:
            values = data[section]
            if not isinstance(values, Mapping):
                raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
            setattr(config, section, _build_section(section, values, getattr(config, section)))
    return config


# ----------------------------------------------------------------------------------------------

"""The one schema of a sconet checkpoint's entries, and the digest of its tensors.

:func:`sconet.checkpoint.read_checkpoint` (the one loader) checks every entry of a sconet
checkpoint against :data:`FIELDS` before anything reads it, so a malformed file is refused with
one line naming the file and the entry (``'class_order' must be ...``), never a traceback
from whichever command touched the entry first. Unknown entries are allowed (newer files).

Digest
------
:func:`sconet.checkpoint.save_checkpoint` adds a ``digest`` entry: per other entry, the sha256
of a canonical walk of its value (mappings in key order, sequences in order, tensors as dtype,
shape and bytes, scalars as JSON). Reading a file recomputes it, so perturbed weights,
optimiser state or metadata are refused naming the file and the entries that differ. Files
without a digest (OpenGait's, older sconet files) load with a note that nothing was checked.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

DIGEST_KEY = "digest"
DIGEST_ALGORITHM = "sha256"
REQUIRED = ("model", "model_config", "cache", "class_order")


# ----------------------------------------------------------------------------------------------
# digest
# ----------------------------------------------------------------------------------------------


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{list(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, key)
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif value is None or isinstance(value, (bool, int, float, str)):
        h.update(json.dumps([type(value).__name__, value]).encode())
    else:  # torch.dtype, torch.Size ... (whatever torch.load's weights_only mode admits)
        h.update(f"?{type(value).__qualname__}:{value!r}".encode())


def entry_digest(value: Any) -> str:
    """sha256 of one checkpoint entry (see the module docstring)."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The ``digest`` entry of a payload: one sha256 per other entry."""
    entries = {str(k): entry_digest(v) for k, v in payload.items() if k != DIGEST_KEY}
    return {"algorithm": DIGEST_ALGORITHM, "entries": entries}


def digest_problem(raw: Mapping[str, Any]) -> str | None:
    """Why a loaded checkpoint does not match its digest, or ``None`` (also when it has none)."""
    doc = raw.get(DIGEST_KEY)
    if doc is None:
        return None
    entries = doc["entries"]
    now = payload_digest(raw)["entries"]
    changed = sorted(k for k in set(entries) | set(now) if entries.get(k) != now.get(k))
    if not changed:
        return None
    names = ", ".join(repr(k) for k in changed[:6]) + (" ..." if len(changed) > 6 else "")
    return (
        f"damaged checkpoint: entr{'y' if len(changed) == 1 else 'ies'} {names} do"
        f"{'es' if len(changed) == 1 else ''} not match the digest recorded when it was saved "
        "(bit rot, or the file was edited); use another copy"
    )


# ----------------------------------------------------------------------------------------------
# schema
# ----------------------------------------------------------------------------------------------

Check = Callable[[Any], str | None]


def _kind(v: Any) -> str:
    return (
        f"{type(v).__name__} {v!r}"
        if not isinstance(v, (Mapping, list, tuple, torch.Tensor))
        else (type(v).__name__)
    )


def _int(lo: int = 0) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            return f"must be an integer >= {lo}, got {_kind(v)}"
        return None

    return check


def _str_or_none(v: Any) -> str | None:
    return None if v is None or isinstance(v, str) else f"must be a string, got {_kind(v)}"


def _mapping(v: Any) -> str | None:
    return None if isinstance(v, Mapping) else f"must be a dict, got {_kind(v)}"


def _fields(spec: dict[str, Check], optional: bool = True) -> Check:
    """A mapping whose listed keys (when present, or always with ``optional=False``) pass their check."""

    def check(v: Any) -> str | None:
        if not isinstance(v, Mapping):
            return f"must be a dict, got {_kind(v)}"
        for key, sub in spec.items():
            if key not in v:
                if optional:
                    continue
                return f"has no {key!r}"
            problem = sub(v[key])
            if problem:
                return f"{key!r} {problem}"
        return None

    return check


def _ids(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        return f"must be a list of id strings, got {_kind(v)}"
    return None


def _tensor(shape: tuple[int | None, ...], finite: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            return f"must be a float tensor, got {_kind(v)}"
        if len(v.shape) != len(shape) or any(
            s is not None and s != d for s, d in zip(shape, v.shape, strict=True)
        ):
            want = "[" + ", ".join("n" if s is None else str(s) for s in shape) + "]"
            return f"must have shape {want}, got {list(v.shape)}"
        if finite and not bool(torch.isfinite(v).all()):
            return "holds non-finite values"
        return None

    return check


def _class_order(v: Any) -> str | None:
    from sconet.classes import CLASSES

    if not isinstance(v, (list, tuple)) or sorted(map(str, v)) != sorted(CLASSES) or len(v) != len(CLASSES):
        return f"must list the classes {', '.join(CLASSES)} in some order, got {_kind(v)}"
    if not all(isinstance(x, str) for x in v):
        return f"must be a list of class names, got {_kind(v)}"
    return None


def _model_config(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"must be a dict of model settings, got {_kind(v)}"
    from sconet.models import ModelConfig

    try:
        ModelConfig.from_dict(v)
    except (TypeError, ValueError) as exc:
        return f"is not a valid model configuration ({exc})"
    return None


def _number(lo_exclusive: float) -> Check:
    def check(v: Any) -> str | None:
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or v <= lo_exclusive
        ):
            return f"must be a number > {lo_exclusive}, got {_kind(v)}"
        return None

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {_kind(v)}"


def _metrics(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return f"must be a dict of metric values, got {_kind(v)}"
    for k, x in v.items():
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
            return f"{k!r} must be a number, got {_kind(x)}"
    return None


def _pav_stats(v: Any) -> str | None:
    problem = _fields({"levels": _tensor((None,)), "n_healthy": _int(), "n_all": _int()}, optional=False)(v)
    if problem:
        return problem
    n = int(v["levels"].shape[0])
    if n < 2:
        return f"'levels' must hold at least 2 quantile levels, got {n}"
    for key in ("healthy", "all")[: 2 if "all" in v else 1]:
        problem = _tensor((n, 8, 3))(v.get(key))
        if problem:
            return f"{key!r} {problem}"
    return None


def _digest(v: Any) -> str | None:
    if not isinstance(v, Mapping) or v.get("algorithm") != DIGEST_ALGORITHM:
        return f"must be a dict with algorithm {DIGEST_ALGORITHM!r}, got {_kind(v)}"
    entries = v.get("entries")
    if not isinstance(entries, Mapping) or not all(
        isinstance(k, str) and isinstance(d, str) and len(d) == 64 for k, d in entries.items()
    ):
        return "'entries' must map entry names to sha256 hex digests"
    return None


FIELDS: dict[str, Check] = {
    "format_version": _int(1),
    "model_config": _model_config,
    "iteration": _int(),
    "class_order": _class_order,
    "cache": _fields(
        {
            "fingerprint": _str_or_none,
            "render": lambda v: None if v is None else _mapping(v),
            "renderer_version": lambda v: (
                None if v is None or isinstance(v, (str, int)) else f"must be a string, got {_kind(v)}"
            ),
            "dataset": _str_or_none,
            "pose_source": lambda v: None if v is None else _mapping(v),
            "path": _str_or_none,
        }
    ),
    "split": lambda v: (
        None
        if v is None
        else _fields({"name": _str_or_none, "train_ids": _ids, "val_ids": _ids, "test_ids": _ids})(v)
    ),
    "recipe": lambda v: (
        None
        if v is None
        else _fields(
            {
                "data": _fields(
                    {"eval_max_frames": _int(1), "eval_batch": _int(1), "cut_pixels": _int(0), "cut": _bool}
                ),
                "loss": _fields({"scale": _number(0.0)}),
            }
        )(v)
    ),
    "optimizer": _mapping,
    "scheduler": _mapping,
    "rng": _mapping,
    "metrics": _metrics,
    "pav_norm": _fields({"min": _tensor((8, 3)), "max": _tensor((8, 3))}, optional=False),
    "pav_stats": _pav_stats,
    "sconet_version": _str_or_none,
    DIGEST_KEY: _digest,
}
"""Entry name -> check returning what is wrong with a value (``None`` when it is fine)."""


def schema_problem(raw: Mapping[str, Any]) -> str | None:
    """The first entry of a sconet checkpoint that breaks :data:`FIELDS`, as ``'entry' ...``."""
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        return f"sconet checkpoint without {', '.join(repr(k) for k in missing)}"
    for key, check in FIELDS.items():
        if key in raw:
            problem = check(raw[key])
            if problem:
                return f"malformed checkpoint: {key!r} {problem}"
    return None

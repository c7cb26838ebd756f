"""Loading OpenGait-named state dicts (sconet, OpenGait and DRF-author files) strictly into a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sconet.classes import CLASSES, class_permutation, resolve_class_order
from sconet.models.sconet import ScoNetMT

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile


# ----------------------------------------------------------------------------------------------
# OpenGait checkpoints
# ----------------------------------------------------------------------------------------------


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the model.

    The attributes list every missing, unexpected or mis-shaped key; the message is one line that
    names the first :attr:`SHOWN` of each kind and counts the rest (a width mismatch touches every
    tensor, and a message listing them all is kilobytes long).
    """

    SHOWN = 3

    def __init__(
        self,
        missing: Sequence[str],
        unexpected: Sequence[str],
        mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
        context: str = "",
    ):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        n = self.SHOWN
        parts = []
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): " + _first(self.missing, n))
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): " + _first(self.unexpected, n))
        shapes = [f"shape mismatch for {k}: checkpoint {list(got)} vs model {list(want)}" for k, got, want in
                  self.mismatched[:n]]  # fmt: skip
        if len(self.mismatched) > n:
            shapes.append(f"and {len(self.mismatched) - n} more tensors of another shape")
        parts.extend(shapes)
        head = f"checkpoint does not match the model{(' (' + context + ')') if context else ''}"
        super().__init__(f"{head}: " + "; ".join(parts))


def _first(keys: Sequence[str], n: int) -> str:
    """The first ``n`` keys, then how many more."""
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


@dataclass
class LoadReport:
    """What :func:`load_opengait_state_dict` did."""

    class_order: tuple[str, ...]
    permutation: tuple[int, ...] | None  # applied to the last axis of BNNecks.fc_bin, or None
    stripped_prefixes: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)  # model keys left at their init (PGA warm start)


def _strip_wrappers(sd: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    stripped: list[str] = []
    changed = True
    while changed and sd:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                stripped.append(prefix)
                changed = True
    return sd, stripped


def load_opengait_state_dict(
    model: ScoNetMT,
    state_dict: Mapping[str, Any],
    class_order: str | Sequence[str] = "2025",
    *,
    rename: Mapping[str, str] | None = None,
    allow_missing_pga: bool = False,
) -> LoadReport:
    """Load an OpenGait ScoNet (or DRF) state dict into ``model``, strictly.

    - ``state_dict``: a state dict, or a whole OpenGait checkpoint (``{"model": ..., ...}``).
      A ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix on every key is stripped.
    - ``class_order``: the checkpoint's class order, ``"2025"`` (negative, neutral, positive:
      current OpenGait, no change) or ``"2024"`` (negative, positive, neutral: the 2024 release and
      the DRF authors' checkpoint), or an explicit tuple; the last axis of ``BNNecks.fc_bin`` is
      permuted into sconet's order so predictions keep their meaning.
    - ``rename``: key-prefix renames applied after stripping, e.g.
      ``{"attention_layer.": "PGA."}`` for the DRF authors' checkpoint.
    - ``allow_missing_pga``: for a DRF model, accept a checkpoint without any ``PGA.*`` key
      (warm start from ScoNet-MT-ske); those parameters keep their initialisation. A checkpoint
      holding only some of them is still a mismatch.

    Raises :class:`CheckpointMismatchError` listing every missing, unexpected and mis-shaped key
    (nothing is loaded then). Returns a :class:`LoadReport`.
    """
    if (
        "model" in state_dict
        and isinstance(state_dict["model"], Mapping)
        and not any(isinstance(v, Tensor) for v in state_dict.values())
    ):
        state_dict = state_dict["model"]
    sd = {str(k): v for k, v in state_dict.items()}
    sd, stripped = _strip_wrappers(sd)
    renamed: list[tuple[str, str]] = []
    if rename:
        out: dict[str, Any] = {}
        for key, value in sd.items():
            new = key
            for old_prefix, new_prefix in rename.items():
                if key.startswith(old_prefix):
                    new = new_prefix + key[len(old_prefix) :]
                    break
            if new != key:
                renamed.append((key, new))
            out[new] = value
        sd = out

    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    initialised: list[str] = []
    if allow_missing_pga and model.PGA is not None and not any(k.startswith("PGA.") for k in sd):
        initialised = [
            k for k in missing if k.startswith("PGA.")
        ]  # all of them, or none (partial PGA = error)
        missing = [k for k in missing if not k.startswith("PGA.")]
    mismatched = [
        (k, tuple(torch.as_tensor(v).shape), tuple(own[k].shape))
        for k, v in sd.items()
        if k in own and tuple(torch.as_tensor(v).shape) != tuple(own[k].shape)
    ]
    cfg = model.config
    context = f"model arch={cfg.arch!r}, in_channels={cfg.in_channels}, width={cfg.width}"
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, context)

    order = resolve_class_order(class_order)
    perm: tuple[int, ...] | None = None
    if model.config.num_classes != len(order):
        raise ValueError(
            f"class order {order} has {len(order)} classes but the model has "
            f"num_classes={model.config.num_classes}"
        )
    if order != tuple(CLASSES):
        perm = class_permutation(order, CLASSES)
        sd["BNNecks.fc_bin"] = torch.as_tensor(sd["BNNecks.fc_bin"])[..., list(perm)].clone()
    result = model.load_state_dict(sd, strict=not initialised)
    if result is not None and (result.unexpected_keys or set(result.missing_keys) - set(initialised)):
        raise CheckpointMismatchError(result.missing_keys, result.unexpected_keys, [], context)
    return LoadReport(order, perm, stripped, renamed, initialised)

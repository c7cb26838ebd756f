"""Losses of ScoNet-MT: batch-all part-wise triplet + part-wise (label-smoothed) cross-entropy.

Semantics follow OpenGait (``TripletLoss``, ``CrossEntropyLoss``, ``loss_aggregator``):

- :class:`TripletLoss`: per part, Euclidean distances ``sqrt(relu(|x|^2 + |y|^2 - 2 x.y))``;
  every (anchor, positive, negative) with ``label[a] == label[p]`` and ``label[a] != label[n]``;
  ``relu(d_ap - d_an + margin)``; mean over the non-zero terms of each part (0 if none); mean over
  parts. Like OpenGait, the anchor itself counts as one of its positives (``d_aa = 0``), which adds
  the terms ``relu(margin - d_an)``; ``include_self_pairs=False`` drops them.
- :class:`CrossEntropyPartLoss`: ``F.cross_entropy(scale * logits [N, K, P], label repeated over
  the P parts, weight=class_weights, label_smoothing=eps)``, i.e. averaged over all N*P terms.
  With class weights PyTorch's convention applies: both the NLL and the smoothing term are
  divided by ``sum_i w[y_i]`` (a weighted mean).
- :class:`ScoNetLoss`: ``triplet_weight * triplet + ce_weight * ce``.

Statistics are returned as detached 0-dim tensors (no host sync inside the loss; call
``float()`` when logging). Under DDP, gather embeddings and labels with :func:`gather_for_triplet`
before the triplet loss and multiply it by the world size, as OpenGait does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TripletLoss",
    "CrossEntropyPartLoss",
    "ScoNetLoss",
    "inverse_frequency_weights",
    "pairwise_part_distances",
    "gather_for_triplet",
]


def pairwise_part_distances(x: Tensor, y: Tensor | None = None) -> Tensor:
    """OpenGait's ``ComputeDistance``: ``x [P, Nx, C]``, ``y [P, Ny, C]`` -> ``[P, Nx, Ny]``."""
    y = x if y is None else y
    x2 = (x**2).sum(-1).unsqueeze(2)
    y2 = (y**2).sum(-1).unsqueeze(1)
    inner = x.matmul(y.transpose(1, 2))
    return torch.sqrt(F.relu(x2 + y2 - 2 * inner))


def _as_label_tensor(labels: Any, device: torch.device) -> Tensor:
    if isinstance(labels, Tensor):
        return labels.to(device)
    arr = np.asarray(labels)
    if arr.dtype.kind in "iub":
        return torch.as_tensor(arr.astype(np.int64), device=device)
    # strings or other objects (e.g. sequence ids): map to integers by equality
    _, inverse = np.unique(arr.astype(str), return_inverse=True)
    return torch.as_tensor(inverse.astype(np.int64), device=device)


class TripletLoss(nn.Module):
    """Batch-all triplet loss per part on embeddings ``[N, C, P]`` with sequence-id labels ``[N]``.

    Returns ``(loss, stats)``; ``stats``: ``loss``, ``nonzero_fraction`` (non-zero terms / valid
    triplets, averaged over parts), ``num_nonzero`` (mean over parts), ``mean_dist`` (mean pairwise
    distance), ``hard_loss`` (largest term, mean over parts).

    Labels may be ints or strings (sequence ids; compared by equality). Memory is ``P * N^3``
    floats for the triplet tensor (4.2 M for the P x K = 8 x 8 batch of 64 sequences).
    """

    def __init__(self, margin: float = 0.2, include_self_pairs: bool = True):
        super().__init__()
        self.margin = float(margin)
        self.include_self_pairs = bool(include_self_pairs)

    def forward(self, embeddings: Tensor, labels: Any) -> tuple[Tensor, dict[str, Tensor]]:
        if embeddings.dim() != 3:
            raise ValueError(f"expected embeddings [N, C, P], got shape {tuple(embeddings.shape)}")
        n = embeddings.shape[0]
        labels_t = _as_label_tensor(labels, embeddings.device).reshape(-1)
        if labels_t.numel() != n:
            raise ValueError(f"{labels_t.numel()} labels for {n} embeddings")
        x = embeddings.permute(2, 0, 1).float()  # [P, N, C]
        dist = pairwise_part_distances(x)  # [P, N, N]

        same = labels_t[:, None] == labels_t[None, :]  # [N, N]
        pos = same.clone()
        if not self.include_self_pairs:
            pos.fill_diagonal_(False)
        neg = ~same
        valid = pos[:, :, None] & neg[:, None, :]  # [a, p, n]
        # [P, a, p, n]: d(a, p) - d(a, n) + margin on valid triplets, 0 elsewhere
        terms = F.relu(dist[:, :, :, None] - dist[:, :, None, :] + self.margin) * valid
        terms = terms.reshape(terms.shape[0], -1)
        nonzero = (terms > 0).sum(-1).float()  # [P]
        per_part = terms.sum(-1) / nonzero.clamp_min(1.0)  # 0 where no non-zero term
        loss = per_part.mean()

        num_valid = valid.sum().float()
        stats = {
            "loss": loss.detach(),
            "nonzero_fraction": (nonzero / num_valid.clamp_min(1.0)).mean().detach(),
            "num_nonzero": nonzero.mean().detach(),
            "mean_dist": dist.mean().detach(),
            "hard_loss": terms.max(-1)[0].mean().detach() if terms.shape[-1] else loss.detach() * 0,
        }
        return loss, stats


def inverse_frequency_weights(labels: Any, num_classes: int = 3) -> Tensor:
    """Class weights ``N / (num_classes * count_c)`` (scikit-learn's "balanced"), float32 ``[K]``.

    A class absent from ``labels`` gets the weight of a class seen once (its count is clamped to 1).
    """
    arr = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    arr = arr.reshape(-1).astype(np.int64)
    if arr.size == 0:
        raise ValueError("inverse_frequency_weights needs at least one label")
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{arr.min()}, {arr.max()}]")
    counts = np.bincount(arr, minlength=num_classes).astype(np.float64)
    weights = arr.size / (num_classes * np.maximum(counts, 1.0))
    return torch.as_tensor(weights, dtype=torch.float32)


class CrossEntropyPartLoss(nn.Module):
    """Cross-entropy on every part: ``logits [N, K, P] * scale`` vs the label repeated over parts.

    Returns ``(loss, stats)``; ``stats``: ``loss``, ``accuracy`` (per-part argmax accuracy, as
    OpenGait logs it) and ``seq_accuracy`` (argmax of the part-averaged logits).
    """

    class_weights: Tensor | None  # a buffer (moves with the module)

    def __init__(
        self,
        scale: float = 16.0,
        label_smoothing: float = 0.1,
        class_weights: Sequence[float] | Tensor | None = None,
    ):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.scale = float(scale)
        self.label_smoothing = float(label_smoothing)
        weights = (
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32).reshape(-1)
        )
        if weights is not None and (weights < 0).any():
            raise ValueError(f"class weights must be non-negative, got {weights.tolist()}")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, labels: Any) -> tuple[Tensor, dict[str, Tensor]]:
        if logits.dim() != 3:
            raise ValueError(f"expected logits [N, classes, parts], got shape {tuple(logits.shape)}")
        n, k, p = logits.shape
        labels_t = _as_label_tensor(labels, logits.device).reshape(-1).long()
        if labels_t.numel() != n:
            raise ValueError(f"{labels_t.numel()} labels for {n} logits")
        weight = self.class_weights
        if weight is not None:
            if weight.numel() != k:
                raise ValueError(f"{weight.numel()} class weights for {k} classes")
            weight = weight.to(logits.device)
        target = labels_t[:, None].expand(n, p)
        loss = F.cross_entropy(
            logits.float() * self.scale, target, weight=weight, label_smoothing=self.label_smoothing
        )
        with torch.no_grad():
            part_acc = (logits.argmax(1) == target).float().mean()
            seq_acc = (logits.mean(-1).argmax(-1) == labels_t).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": part_acc, "seq_accuracy": seq_acc}


@dataclass(frozen=True)
class LossTerm:
    """One registered loss term: how to build it from the loss settings, and what it reads.

    ``build(settings, class_weights) -> nn.Module`` returning ``(loss, stats)`` when called on
    ``(outputs.<reads>, <target>)``; ``target`` is ``"seq_ids"`` (sequence ids) or ``"labels"``
    (class indices). ``batch_level``: the term compares samples with each other, so under DDP it
    runs on the embeddings of all ranks (all-gathered; scaled by the world size to undo DDP's
    gradient averaging, OpenGait's convention); other terms stay local.
    """

    build: Callable[[Any, Sequence[float] | Tensor | None], nn.Module]
    reads: str
    target: str
    batch_level: bool = False


LOSSES: dict[str, LossTerm] = {
    "triplet": LossTerm(
        build=lambda s, _w: TripletLoss(s.margin, include_self_pairs=s.include_self_pairs),
        reads="embeddings",
        target="seq_ids",
        batch_level=True,
    ),
    "ce": LossTerm(
        build=lambda s, w: CrossEntropyPartLoss(s.scale, s.label_smoothing, w),
        reads="logits",
        target="labels",
    ),
}
"""Loss terms by name. A term's weight is the loss settings' ``<name>_weight`` (0 = not computed):
adding a loss is a module, an entry here and a weight field in ``LossConfig``."""


class ScoNetLoss(nn.Module):
    """The weighted sum of the registered terms (:data:`LOSSES`): triplet + cross-entropy, 1:1 by default.

    ``forward(embeddings, logits, seq_ids, class_labels, world_size=1) -> (total, stats)`` with
    stats keys ``loss``, ``<term>/<stat>`` (detached 0-dim tensors). A term whose weight is 0 is
    not computed. ``world_size > 1`` (DDP): batch-level terms see every rank's embeddings and
    ``stats["loss"]`` is the loss value itself, without the gradient factor.
    """

    def __init__(
        self,
        triplet_weight: float = 1.0,
        ce_weight: float = 1.0,
        margin: float = 0.2,
        scale: float = 16.0,
        label_smoothing: float = 0.1,
        class_weights: Sequence[float] | Tensor | None = None,
        include_self_pairs: bool = True,
        *,
        settings: Any = None,
    ):
        """Terms from the keyword values, or from ``settings`` (a ``LossConfig``) when given."""
        super().__init__()
        if settings is None:
            settings = SimpleNamespace(
                triplet_weight=triplet_weight,
                ce_weight=ce_weight,
                margin=margin,
                scale=scale,
                label_smoothing=label_smoothing,
                include_self_pairs=include_self_pairs,
            )
        self.weights = {name: float(getattr(settings, f"{name}_weight", 0.0)) for name in LOSSES}
        self.terms = nn.ModuleDict(
            {name: term.build(settings, class_weights) for name, term in LOSSES.items()}
        )

    @classmethod
    def from_config(cls, settings: Any, class_weights: Sequence[float] | Tensor | None = None) -> ScoNetLoss:
        """Build from ``sconet.training.LossConfig`` settings; ``class_weights`` resolved by the caller."""
        return cls(class_weights=class_weights, settings=settings)

    @property
    def triplet(self) -> nn.Module:
        return self.terms["triplet"]

    @property
    def ce(self) -> nn.Module:
        return self.terms["ce"]

    @property
    def triplet_weight(self) -> float:
        return self.weights["triplet"]

    @property
    def ce_weight(self) -> float:
        return self.weights["ce"]

    def forward(
        self, embeddings: Tensor, logits: Tensor, seq_ids: Any, class_labels: Any, world_size: int = 1
    ) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = {"embeddings": embeddings, "logits": logits}
        targets = {"seq_ids": seq_ids, "labels": class_labels}
        total = logits.new_zeros((), dtype=torch.float32)
        reported = total.detach().clone()
        stats: dict[str, Tensor] = {}
        for name, term in LOSSES.items():
            weight = self.weights[name]
            if not weight:
                continue
            x, y = inputs[term.reads], targets[term.target]
            factor = 1.0
            if term.batch_level and world_size > 1:
                x, y = gather_for_triplet(x, torch.as_tensor(y, device=x.device))
                factor = float(world_size)
            value, term_stats = self.terms[name](x, y)
            total = total + weight * factor * value
            reported = reported + weight * value.detach()
            stats.update({f"{name}/{k}": v for k, v in term_stats.items()})
        stats["loss"] = reported
        return total, stats


def gather_for_triplet(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """All-gather embeddings and labels across DDP ranks, keeping this rank's slice differentiable.

    OpenGait's ``ddp_all_gather`` convention: every rank computes the triplet loss on the whole
    gathered batch; multiply that loss by the world size to undo DDP's gradient averaging.
    Without an initialised process group this returns its inputs unchanged.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings, labels
    world, rank = dist.get_world_size(), dist.get_rank()
    emb_list = [torch.empty_like(embeddings) for _ in range(world)]
    lab_list = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(emb_list, embeddings.detach().contiguous())
    dist.all_gather(lab_list, labels.contiguous())
    emb_list[rank] = embeddings
    return torch.cat(emb_list, 0), torch.cat(lab_list, 0)

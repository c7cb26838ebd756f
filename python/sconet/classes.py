"""Class names and class index orders (no heavy imports; safe to import anywhere).

Inside sconet the class index order is always ``negative=0, neutral=1, positive=2``
(:data:`CLASSES`, the order of current OpenGait). Checkpoints from the 2024 ScoNet release and
the DRF authors' checkpoint use ``negative=0, positive=1, neutral=2``
(:data:`CLASS_ORDER_2024`); their class dimension is permuted on load with
:func:`class_permutation`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CLASSES",
    "CLASS_ORDER_2024",
    "CLASS_ORDER_2025",
    "CLASS_ORDERS",
    "CLASS_TO_INDEX",
    "NEGATIVE",
    "class_permutation",
    "resolve_class_order",
]

CLASSES: tuple[str, str, str] = ("negative", "neutral", "positive")
"""sconet's class order (index = position)."""

CLASS_ORDER_2025: tuple[str, str, str] = CLASSES
"""Current OpenGait order (``evaluate_scoliosis`` label map), identical to :data:`CLASSES`."""

CLASS_ORDER_2024: tuple[str, str, str] = ("negative", "positive", "neutral")
"""Order of the 2024 ScoNet release and of the DRF authors' checkpoint."""

CLASS_ORDERS: dict[str, tuple[str, ...]] = {"2025": CLASS_ORDER_2025, "2024": CLASS_ORDER_2024}
"""Named orders accepted wherever a ``class_order`` argument is taken."""

CLASS_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

NEGATIVE = "negative"
"""The class that screening metrics treat as 'healthy' (everything else counts as a finding)."""


def resolve_class_order(order: str | Sequence[str]) -> tuple[str, ...]:
    """Return a class order given its name (``"2024"``, ``"2025"``) or an explicit sequence.

    An explicit sequence must be a permutation of :data:`CLASSES` (case-insensitive).
    """
    if isinstance(order, str):
        key = order.strip()
        if key not in CLASS_ORDERS:
            raise ValueError(
                f"unknown class order {order!r}: expected one of {sorted(CLASS_ORDERS)} "
                f"or an explicit sequence of the class names {CLASSES}"
            )
        return CLASS_ORDERS[key]
    names = tuple(str(n).strip().lower() for n in order)
    if sorted(names) != sorted(CLASSES):
        raise ValueError(f"class order {tuple(order)!r} is not a permutation of {CLASSES}")
    return names


def class_permutation(source: str | Sequence[str], target: str | Sequence[str] = CLASSES) -> tuple[int, ...]:
    """Index permutation ``perm`` from ``source`` order to ``target`` order.

    ``perm[j]`` is the source index of the class at target index ``j``, so for anything with a
    class axis in the source order, ``x_target = x_source[..., perm]`` (e.g. logits, or the last
    axis of a BNNeck classifier weight). Example: ``class_permutation("2024") == (0, 2, 1)``.
    """
    src = resolve_class_order(source)
    dst = resolve_class_order(target)
    return tuple(src.index(name) for name in dst)

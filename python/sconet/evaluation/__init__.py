"""Evaluation: standalone evaluation of checkpoints, metrics, and explanations (PAV and DRF gates)."""

import importlib
from typing import Any

from sconet.evaluation.metrics import ClassMetrics, Metrics, confusion_matrix, evaluate_predictions

# torch-free at import: the metrics are plain numpy; the rest loads torch on first use.
_LAZY = {
    **dict.fromkeys(
        (
            "SUBSETS", "EvalResult", "Predictions", "RenderMismatchError", "describe_render",
            "evaluate_checkpoint", "evaluate_model", "load_model", "predict",
        ),
        "sconet.evaluation.evaluate",
    ),
    **dict.fromkeys(("Explanations", "png_name", "render_png", "write_pngs"), "sconet.evaluation.explain"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ClassMetrics",
    "Metrics",
    "confusion_matrix",
    "evaluate_predictions",
    *_LAZY,
]

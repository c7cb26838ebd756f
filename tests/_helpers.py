"""Helpers shared by test modules (imported as ``from _helpers import ...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sconet.training import TrainConfig, apply_overrides, load_recipe

# Upright COCO-17 skeleton (x right, y down), arbitrary units; the renderer normalises scale.
STANDING = np.array(
    [
        [0, -80], [-3, -83], [3, -83], [-6, -81], [6, -81], [-12, -65], [12, -65],
        [-14, -45], [14, -45], [-15, -28], [15, -28], [-8, -20], [8, -20], [-9, 20],
        [9, 20], [-9, 58], [9, 58],
    ],
    dtype=np.float64,
)  # fmt: skip


# `sconet train` options for the same few-second CPU run as :func:`tiny_config` (evaluated and
# saved at iteration 3).
TINY_TRAIN_SETS = [
    "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8", "--set", "data.eval_max_frames=40",
    "--set", "run.eval_iter=3", "--set", "run.save_iter=3", "--set", "run.log_iter=1",
]  # fmt: skip


def tiny_config(
    cache: Path, split: Path, out: Path, *extra: tuple[str, str, Any], recipe: str = "demo-cpu"
) -> TrainConfig:
    """A few-second CPU run of ``recipe`` on a small cache: P x K 4 x 2, 8 frames, 40 evaluation
    frames, 2 iterations (evaluated and saved at 2); ``extra`` overrides come last."""
    return apply_overrides(
        load_recipe(recipe),
        [
            ("data", "cache", str(cache)),
            ("data", "split", str(split)),
            ("data", "p", 4),
            ("data", "k", 2),
            ("data", "frames", 8),
            ("data", "eval_max_frames", 40),
            ("run", "iters", 2),
            ("run", "eval_iter", 2),
            ("run", "save_iter", 2),
            ("run", "log_iter", 1),
            ("run", "device", "cpu"),
            ("run", "out", str(out)),
            *extra,
        ],
    )


def reseal_store(path: Path) -> None:
    """After a test edits a store's arrays on purpose: record the edit as if the store had been
    built that way (its index digest and integrity manifest), so readers accept it."""
    import json

    import zarr

    from sconet.cache.format import _read_root_attrs, index_digest
    from sconet.cache.integrity import read_manifest, write_manifest

    group = zarr.open_group(str(path), mode="r+")
    attrs = _read_root_attrs(path) or {}
    digest = index_digest(
        attrs["ids"], attrs["views"], group["offsets"][:], group["labels"][:], group["pav"][:]
    )
    group.attrs.update({"index_digest": digest})
    inputs = (read_manifest(path) or {}).get("inputs", {})
    write_manifest(path, {}, json.loads((path / "zarr.json").read_text())["attributes"], inputs)

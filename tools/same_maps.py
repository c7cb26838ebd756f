"""Byte-identity check of two builds of the renderer: this one and a saved ``_skelmap*.so``.

    cp python/sconet/_skelmap.abi3.so /tmp/old/   # before changing the Rust code
    python tools/same_maps.py --baseline /tmp/old/_skelmap.abi3.so

Renders the same synthetic sequences (float32 and float64, missing keypoints, faint and
degenerate frames) with both builds for every built-in representation, every geometry,
alignment, imputation and head mode, and a few sigmas; once per CPU variant this machine runs
(``SCONET_SKELMAP_NO_AVX512`` / ``SCONET_SKELMAP_NO_SIMD`` cap it). PAVs and both imputations
are compared too. Prints a line per variant and exits 1 on the first difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from sconet import _skelmap
from sconet.data.synth import SynthConfig, generate_sequence
from sconet.render import ALIGNMENTS, BUILTIN_REPRESENTATIONS, GEOMETRIES, HEADS, IMPUTATIONS

SIGMAS = ((8.0, 8.0), (15.0, 8.0), (3.0, 20.0))
VARIANTS = {
    "best": {},
    "no-avx512": {"SCONET_SKELMAP_NO_AVX512": "1"},
    "generic": {"SCONET_SKELMAP_NO_SIMD": "1"},
}


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline._skelmap", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def poses(sequences: int, frames: int) -> list[np.ndarray]:
    labels = ("negative", "neutral", "positive")
    config = SynthConfig(frames=frames, missing_rate=0.05)
    out = [generate_sequence(i, labels[i % 3], config) for i in range(sequences)]
    edge = out[0].copy()
    edge[1, :, 2] = np.linspace(0.0, 0.004, 17)  # faint keypoints around the 1e-3 threshold
    edge[2, :, 1] = edge[2, 0, 1]  # zero vertical extent: an empty frame
    edge[3, 5:, :2] = 0.0  # the body missing in one frame
    out.append(edge)
    out += [p.astype(np.float64) for p in out[:2]]
    return out


def compare(new: ModuleType, old: ModuleType, batch: list[np.ndarray]) -> int:
    """Renders every setting with both builds; returns how many calls matched."""
    calls = 0
    combos = itertools.product(BUILTIN_REPRESENTATIONS.values(), GEOMETRIES, ALIGNMENTS, IMPUTATIONS, HEADS)
    for i, (rep, geometry, alignment, impute, head) in enumerate(combos):
        sigma_limb, sigma_joint = SIGMAS[i % len(SIGMAS)]
        args = (rep.joint_mask(), rep.limb_array(), sigma_limb, sigma_joint, geometry, alignment, impute, 1)
        a = new.render_batch(batch, *args, head=head)
        b = old.render_batch(batch, *args, head=head)
        if not np.array_equal(a, b):
            diff = int(np.count_nonzero(a != b))
            raise SystemExit(f"DIFFERENT: {rep.name} {args[2:]} head={head}: {diff} of {a.size} bytes")
        calls += 1
    if not np.array_equal(new.pav_batch(batch, 1), old.pav_batch(batch, 1)):
        raise SystemExit("DIFFERENT: pav_batch")
    for method, pose in itertools.product(("linear", "knn"), batch):
        if not np.array_equal(new.impute(pose, method), old.impute(pose, method)):
            raise SystemExit(f"DIFFERENT: impute {method} ({pose.dtype})")
    return calls + 1 + 2 * len(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="the other build's _skelmap*.so")
    ap.add_argument("--sequences", type=int, default=5)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    old = load(args.baseline)
    batch = poses(args.sequences, args.frames)
    frames = sum(len(p) for p in batch)
    seen = set()
    for name, env in VARIANTS.items():
        for var in ("SCONET_SKELMAP_NO_AVX512", "SCONET_SKELMAP_NO_SIMD"):
            os.environ.pop(var, None)
        os.environ.update(env)
        level = _skelmap.simd_level()
        if level in seen:
            print(f"{name:10} -> {level}: already compared")
            continue
        seen.add(level)
        calls = compare(_skelmap, old, batch)
        print(f"{name:10} -> {level}: {calls} calls identical ({frames} frames per render call)")
    print(f"identical: {_skelmap.__file__} and {args.baseline}")
    sys.exit(0)


if __name__ == "__main__":
    main()

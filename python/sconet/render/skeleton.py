"""The COCO-17 skeleton: joint names, the limbs of SkeletonGait / PoseC3D and the PAV pairs.

Defined once, in the Rust extension (``sconet._skelmap``), and read from there.
"""

from __future__ import annotations

from sconet import _skelmap

NUM_JOINTS: int = _skelmap.NUM_JOINTS

JOINT_NAMES: tuple[str, ...] = _skelmap.JOINT_NAMES
"""The keypoint names, in keypoint order (nose, eyes, ears, shoulders, ..., ankles)."""

COCO_LIMBS: tuple[tuple[int, int], ...] = _skelmap.COCO_LIMBS
"""The 17 COCO limbs of SkeletonGait / PoseC3D (no shoulder-shoulder limb, hips linked)."""

PAV_PAIRS: tuple[tuple[int, int], ...] = _skelmap.PAV_PAIRS
"""Symmetric (left, right) keypoint pairs, the PAV rows, head to ankle."""
PAV_PAIR_NAMES: tuple[str, ...] = _skelmap.PAV_PAIR_NAMES
PAV_METRICS: tuple[str, ...] = _skelmap.PAV_METRICS
"""The PAV columns."""

"""The COCO-17 skeleton: joint names, the limbs of SkeletonGait / PoseC3D and the PAV pairs."""

from __future__ import annotations

NUM_JOINTS = 17

JOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

COCO_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8),
    (8, 10), (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
)  # fmt: skip
"""The 17 COCO limbs of SkeletonGait / PoseC3D (no shoulder-shoulder limb, hips linked)."""

PAV_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)  # fmt: skip
"""Symmetric (left, right) keypoint pairs, the PAV rows, head to ankle."""
PAV_PAIR_NAMES: tuple[str, ...] = (
    "eyes", "ears", "shoulders", "elbows", "wrists", "hips", "knees", "ankles",
)  # fmt: skip
PAV_METRICS: tuple[str, ...] = ("height_difference", "midline_deviation", "tilt_degrees")
"""The PAV columns."""

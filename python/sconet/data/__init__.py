"""Inputs: pose files (:mod:`readers`, :mod:`safe_pickle`), dataset layouts (:mod:`layouts`), split files
(:mod:`splits`) and the built-in synthetic Scoliosis1K (:mod:`synth`).
"""

from sconet.classes import CLASSES
from sconet.data.layouts import (
    DEFAULT_LAYOUT,
    LAYOUTS,
    LoadResult,
    SequenceRecord,
    describe_pose_source,
    labels_of,
    load_sequences,
    normalise_label,
    read_pose_source,
    scan_dataset,
    write_skip_report,
)
from sconet.data.readers import N_KEYPOINTS, POSE_SUFFIXES, PoseError, load_pose_file, validate_pose
from sconet.data.splits import Split, SplitCheck, SplitError, carve_validation, check_split, load_split

__all__ = [
    "CLASSES",
    "DEFAULT_LAYOUT",
    "LAYOUTS",
    "LoadResult",
    "SequenceRecord",
    "labels_of",
    "load_sequences",
    "normalise_label",
    "describe_pose_source",
    "read_pose_source",
    "scan_dataset",
    "write_skip_report",
    "N_KEYPOINTS",
    "POSE_SUFFIXES",
    "PoseError",
    "load_pose_file",
    "validate_pose",
    "Split",
    "SplitCheck",
    "SplitError",
    "carve_validation",
    "check_split",
    "load_split",
]

"""OpenGait split files ``{"TRAIN_SET": [ids], "TEST_SET": [ids]}`` and validation carving.

Carving (:func:`carve_validation`, :meth:`Split.carve_validation`) is stratified by label and
deterministic in its seed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sconet._io import atomic_write_text
from sconet.classes import CLASSES
from sconet.data.layouts import SequenceRecord


class SplitError(ValueError):
    """A split file is malformed. ``str(err)`` starts with the file path (when there is one)."""


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def _labels_mapping(ids: Sequence[str], labels: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(labels, Mapping):
        mapping = {str(k): str(v).lower() for k, v in labels.items()}
    else:
        if len(labels) != len(ids):
            raise ValueError(f"got {len(labels)} labels for {len(ids)} ids")
        mapping = {str(i): str(lab).lower() for i, lab in zip(ids, labels, strict=True)}
    bad = sorted({v for v in mapping.values() if v not in CLASSES})
    if bad:
        raise ValueError(f"unknown label(s) {bad}: expected {CLASSES}")
    return mapping


def carve_validation(
    ids: Iterable[str],
    labels: Mapping[str, str] | Sequence[str],
    fraction: float = 0.1,
    seed: int = 0,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``ids`` into ``(train_ids, val_ids)``, stratified by label, deterministic in ``seed``.

    ``labels``: ``{id: label}`` (must cover every id) or a sequence aligned with ``ids``.
    Per class with ``n`` ids, ``round(fraction * n)`` go to validation, at least one when
    ``fraction > 0`` and ``n >= 2``, and never all of them. Both outputs keep the input order.
    ``fraction = 0`` gives no validation ids.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("carve_validation: duplicate ids")
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"carve_validation: fraction must be in [0, 1), got {fraction}")
    mapping = _labels_mapping(ids, labels)
    missing = [i for i in ids if i not in mapping]
    if missing:
        raise ValueError(f"carve_validation: no label for {len(missing)} id(s), e.g. {missing[:5]}")
    rng = np.random.default_rng([int(seed), 0x5CA1])
    val: set[str] = set()
    for cls in CLASSES:
        members = sorted(i for i in ids if mapping[i] == cls)
        n = len(members)
        if n == 0 or fraction == 0:
            continue
        k = int(math.floor(fraction * n + 0.5))
        if n >= 2:
            k = min(max(k, 1), n - 1)
        else:
            k = 0
        pick = rng.permutation(n)[:k]
        val.update(members[j] for j in pick)
    return tuple(i for i in ids if i not in val), tuple(i for i in ids if i in val)


@dataclass(frozen=True)
class Split:
    """A train/test partition of sequence ids (OpenGait split file); ``val_ids``: the validation
    ids a run carved (its ``split.json`` lists them as ``VAL_SET``), empty otherwise."""

    name: str
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    val_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("train_ids", "test_ids", "val_ids"):
            object.__setattr__(self, key, tuple(str(i) for i in getattr(self, key)))
        sets = {"TRAIN_SET": self.train_ids, "VAL_SET": self.val_ids, "TEST_SET": self.test_ids}
        for a, b in (("TRAIN_SET", "TEST_SET"), ("TRAIN_SET", "VAL_SET"), ("VAL_SET", "TEST_SET")):
            both = set(sets[a]) & set(sets[b])
            if both:
                raise SplitError(
                    f"split {self.name!r}: {len(both)} id(s) in both {a} and {b}, e.g. {sorted(both)[:5]}"
                )

    @property
    def ids(self) -> tuple[str, ...]:
        """Training, validation and test ids."""
        return self.train_ids + self.val_ids + self.test_ids

    def subset(self, which: str) -> tuple[str, ...]:
        """The ids of ``"train"``, ``"val"`` or ``"test"``."""
        return {"train": self.train_ids, "val": self.val_ids, "test": self.test_ids}[which]

    def to_json(self) -> str:
        """OpenGait JSON text ``{"TRAIN_SET": [...], "TEST_SET": [...]}``."""
        return (
            json.dumps({"TRAIN_SET": list(self.train_ids), "TEST_SET": list(self.test_ids)}, indent=2) + "\n"
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically)."""
        return atomic_write_text(path, self.to_json())

    def carve_validation(
        self, labels: Mapping[str, str] | Sequence[str], fraction: float = 0.1, seed: int = 0
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(train_ids, val_ids)`` carved from :attr:`train_ids`, stratified by label.

        ``labels``: ``{id: label}`` covering the training ids (e.g. :func:`labels_of` of the
        scanned records) or a sequence aligned with :attr:`train_ids`. See
        :func:`carve_validation`.
        """
        return carve_validation(self.train_ids, labels, fraction, seed)


def _check_id_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SplitError(f"{path}: {key} must be a list of id strings, got {type(value).__name__}")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise SplitError(f"{path}: {key}[{i}] must be a string id, got {type(v).__name__} {v!r}")
        if not v.strip():
            raise SplitError(f"{path}: {key}[{i}] is an empty id")
        out.append(v)
    dup = sorted({v for v in out if out.count(v) > 1}) if len(set(out)) != len(out) else []
    if dup:
        raise SplitError(f"{path}: {key} lists id(s) more than once: {dup[:5]}")
    return tuple(out)


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read an OpenGait split JSON ``{"TRAIN_SET": [...], "TEST_SET": [...]}`` (the one loader of
    split files: ``sconet cache``, ``train`` and ``eval`` all read them here).

    Ids must be strings (``"00000"``), unique within each list, and no id may be in two lists.
    An optional ``VAL_SET`` (a run's ``split.json``) is read too; other keys are ignored. A
    UTF-8 byte-order mark is accepted. The split's name is the file stem
    (``Scoliosis1K_112``). Errors are :class:`SplitError` naming the file.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SplitError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path}: cannot read split file ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SplitError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SplitError(
            f"{path}: expected a JSON object with TRAIN_SET and TEST_SET, got {type(doc).__name__}"
        )
    missing = [k for k in ("TRAIN_SET", "TEST_SET") if k not in doc]
    if missing:
        raise SplitError(f"{path}: missing key(s) {missing} (expected TRAIN_SET and TEST_SET)")
    train = _check_id_list(doc["TRAIN_SET"], "TRAIN_SET", path)
    test = _check_id_list(doc["TEST_SET"], "TEST_SET", path)
    val = _check_id_list(doc["VAL_SET"], "VAL_SET", path) if "VAL_SET" in doc else ()
    try:
        return Split(path.stem, train, test, val)
    except SplitError as exc:
        raise SplitError(f"{path}: {str(exc).split(': ', 1)[1]}") from None


@dataclass(frozen=True)
class SplitCheck:
    """Result of :func:`check_split`: split ids absent from the dataset, and dataset ids the
    split does not mention."""

    missing_train: tuple[str, ...]
    missing_test: tuple[str, ...]
    unused: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every split id is in the dataset."""
        return not self.missing_train and not self.missing_test

    def messages(self, name: str = "split") -> list[str]:
        """Human-readable problems (empty when everything matches)."""
        out = []
        for what, ids in (("training", self.missing_train), ("test", self.missing_test)):
            if ids:
                out.append(f"{len(ids)} {what} id(s) of {name} are not in the dataset, e.g. {list(ids[:5])}")
        if self.unused:
            out.append(
                f"{len(self.unused)} dataset id(s) are in neither set of {name}, e.g. {list(self.unused[:5])}"
            )
        return out


def check_split(split: Split, records: Iterable[SequenceRecord] | Iterable[str]) -> SplitCheck:
    """Compare a split with a dataset (records from :func:`scan_dataset`, or plain ids)."""
    present = {r.id if isinstance(r, SequenceRecord) else str(r) for r in records}
    in_split = set(split.train_ids) | set(split.test_ids)
    return SplitCheck(
        missing_train=tuple(i for i in split.train_ids if i not in present),
        missing_test=tuple(i for i in split.test_ids if i not in present),
        unused=tuple(sorted(present - in_split)),
    )

"""Representations: which joints and limbs are drawn (data, not code); built-ins and ``.toml``/``.json``."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sconet.render.skeleton import COCO_LIMBS, NUM_JOINTS

# --------------------------------------------------------------------------------------------
# Representations
# --------------------------------------------------------------------------------------------


def _is_index(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class Representation:
    """Which joints go on the joint map and which limbs on the limb map (data, not code).

    ``joints``: keypoint indices 0..16 (stored sorted); ``limbs``: keypoint index pairs, each
    drawn whether or not its ends are in ``joints``. Duplicates (also ``(a, b)`` with
    ``(b, a)``) and a limb from a keypoint to itself are rejected.
    """

    name: str
    joints: tuple[int, ...]
    limbs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"representation name must be a non-empty string, got {self.name!r}")
        try:
            joints = list(self.joints)
        except TypeError:
            raise ValueError(f"representation {self.name!r}: joints must be a list of indices") from None
        for j in joints:
            if not _is_index(j) or not 0 <= int(j) < NUM_JOINTS:
                raise ValueError(f"representation {self.name!r}: joint {j!r} is not a keypoint index 0..16")
        joints = [int(j) for j in joints]
        dup = sorted({j for j in joints if joints.count(j) > 1})
        if dup:
            raise ValueError(f"representation {self.name!r}: duplicate joints {dup}")
        limbs: list[tuple[int, int]] = []
        seen: set[frozenset[int]] = set()
        try:
            raw_limbs = list(self.limbs)
        except TypeError:
            raise ValueError(f"representation {self.name!r}: limbs must be a list of pairs") from None
        for limb in raw_limbs:
            try:
                a, b = limb
            except (TypeError, ValueError):
                raise ValueError(
                    f"representation {self.name!r}: limb {limb!r} is not a pair of indices"
                ) from None
            if not (_is_index(a) and _is_index(b)) or not (
                0 <= int(a) < NUM_JOINTS and 0 <= int(b) < NUM_JOINTS
            ):
                raise ValueError(f"representation {self.name!r}: limb {limb!r} needs keypoint indices 0..16")
            a, b = int(a), int(b)
            if a == b:
                raise ValueError(f"representation {self.name!r}: limb ({a}, {b}) joins a keypoint to itself")
            if frozenset((a, b)) in seen:
                raise ValueError(f"representation {self.name!r}: duplicate limb ({a}, {b})")
            seen.add(frozenset((a, b)))
            limbs.append((a, b))
        if not joints and not limbs:
            raise ValueError(f"representation {self.name!r} draws nothing (no joints, no limbs)")
        object.__setattr__(self, "name", self.name.strip())
        object.__setattr__(self, "joints", tuple(sorted(joints)))
        object.__setattr__(self, "limbs", tuple(limbs))

    def joint_mask(self) -> np.ndarray:
        """uint8 ``[17]``: 1 for the joints drawn on the joint map."""
        mask = np.zeros(NUM_JOINTS, np.uint8)
        mask[list(self.joints)] = 1
        return mask

    def limb_array(self) -> np.ndarray:
        """int64 ``[L, 2]`` keypoint pairs."""
        return np.array(self.limbs, dtype=np.int64).reshape(-1, 2)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "joints": list(self.joints), "limbs": [list(limb) for limb in self.limbs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> Representation:
        """From ``{"name", "joints", "limbs"}`` (optionally ``"description"``, ignored)."""
        where = f"{source}: " if source else ""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}a representation must be a table/object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"name", "joints", "limbs", "description"})
        missing = [k for k in ("name", "joints", "limbs") if k not in data]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing key(s) {missing}")
            if unknown:
                parts.append(f"unknown key(s) {unknown}")
            raise ValueError(f"{where}{'; '.join(parts)} (expected name, joints, limbs)")
        try:
            return cls(
                name=data["name"],
                joints=tuple(data["joints"]),
                limbs=tuple(tuple(x) if isinstance(x, (list, tuple)) else x for x in data["limbs"]),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}{exc}") from None


def _body(lo: int) -> tuple[tuple[int, int], ...]:
    return tuple(limb for limb in COCO_LIMBS if min(limb) >= lo)


BUILTIN_REPRESENTATIONS: Mapping[str, Representation] = MappingProxyType(
    {
        "full-body": Representation("full-body", tuple(range(NUM_JOINTS)), COCO_LIMBS),
        "body-only": Representation("body-only", tuple(range(5, 17)), _body(5)),
        "head-lite": Representation("head-lite", (0, *range(5, 17)), ((0, 5), (0, 6), *_body(5))),
    }
)
"""The user's representations: ``full-body`` (17 joints, 17 limbs), ``body-only`` (joints
5..16, the 11 limbs among them; the winner), ``head-lite`` (body-only + nose and the
nose-shoulder links)."""


def load_representation(path: str | Path) -> Representation:
    """A representation from a ``.toml`` or ``.json`` file with ``name``, ``joints``, ``limbs``.

    Example (TOML)::

        name = "arms"
        joints = [5, 6, 7, 8, 9, 10]
        limbs = [[5, 7], [7, 9], [6, 8], [8, 10]]

    Raises ``ValueError`` naming the file for any problem.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"{p}: a representation file must end in .toml or .json")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read representation file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8")) if suffix == ".toml" else json.loads(raw)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not valid {suffix[1:].upper()} ({exc})") from None
    return Representation.from_dict(data, source=str(p))


def get_representation(name_or_path: str | Path | Representation) -> Representation:
    """A built-in representation by name, or one loaded from a ``.toml`` / ``.json`` file."""
    if isinstance(name_or_path, Representation):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_REPRESENTATIONS:
        return BUILTIN_REPRESENTATIONS[name_or_path]
    if isinstance(name_or_path, (str, Path)):
        p = Path(name_or_path)
        if p.suffix.lower() in (".toml", ".json") or p.exists():
            return load_representation(p)
    names = ", ".join(BUILTIN_REPRESENTATIONS)
    raise ValueError(f"unknown representation {name_or_path!r}: use one of {names} or a .toml/.json file")

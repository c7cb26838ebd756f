"""Render settings: the skeleton-map pipeline's constants and :class:`RenderConfig`.

A ``RenderConfig`` is recorded in every store and checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sconet import _skelmap
from sconet.render.representations import BUILTIN_REPRESENTATIONS, Representation, get_representation

RENDERER_VERSION: str = _skelmap.RENDERER_VERSION
"""Version of the rendering rules (from the extension); part of :meth:`RenderConfig.key`."""

MAP_SIZE: int = _skelmap.MAP_SIZE
"""Side of a stored map (px)."""
FRAME_SHAPE: tuple[int, int, int] = _skelmap.FRAME_SHAPE
"""One rendered frame: limb map and joint map, ``MAP_SIZE`` x ``MAP_SIZE``."""

# The allowed values of the settings (defined with the renderer, in Rust).
GEOMETRIES: tuple[str, ...] = _skelmap.GEOMETRIES
ALIGNMENTS: tuple[str, ...] = _skelmap.ALIGNMENTS
IMPUTATIONS: tuple[str, ...] = _skelmap.IMPUTATIONS
HEADS: tuple[str, ...] = _skelmap.HEADS
"""How the head keypoints (0..4) take part, after imputation: ``keep`` (as the representation
says; counted in the height normalisation), ``zero-scores`` (drawn nowhere, still counted),
``remove`` (drawn nowhere, not counted)."""


@dataclass(frozen=True)
class RenderConfig:
    """Everything that defines the rendered maps (see the module docstring).

    ``representation`` may be given as a :class:`Representation`, a built-in name or a file
    path; sigmas are coerced to float. Defaults: the user's winning setup (body-only, limb
    sigma 15, joint sigma 8, square geometry, shared alignment, linear imputation, head kept).
    OpenGait's own settings are the presets of :mod:`sconet.render.presets`.
    """

    representation: Representation = field(default_factory=lambda: BUILTIN_REPRESENTATIONS["body-only"])
    sigma_limb: float = _skelmap.DEFAULT_SIGMA_LIMB
    sigma_joint: float = _skelmap.DEFAULT_SIGMA_JOINT
    geometry: str = _skelmap.DEFAULT_GEOMETRY
    alignment: str = _skelmap.DEFAULT_ALIGNMENT
    impute: str = _skelmap.DEFAULT_IMPUTE
    head: str = _skelmap.DEFAULT_HEAD

    def __post_init__(self) -> None:
        object.__setattr__(self, "representation", get_representation(self.representation))
        for name in ("sigma_limb", "sigma_joint"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            v = float(v)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v}")
            object.__setattr__(self, name, v)
        for name, allowed in (
            ("geometry", GEOMETRIES),
            ("alignment", ALIGNMENTS),
            ("impute", IMPUTATIONS),
            ("head", HEADS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def reference(cls) -> RenderConfig:
        """The reference (OpenGait / SkeletonGait) settings used for parity: full-body,
        sigma 8 / 8, square, per-channel, no imputation (feed complete poses)."""
        return cls(
            representation=BUILTIN_REPRESENTATIONS["full-body"],
            sigma_limb=_skelmap.REFERENCE_SIGMA_LIMB,
            sigma_joint=_skelmap.REFERENCE_SIGMA_JOINT,
            geometry=_skelmap.REFERENCE_GEOMETRY,
            alignment=_skelmap.REFERENCE_ALIGNMENT,
            impute=_skelmap.REFERENCE_IMPUTE,
            head=_skelmap.REFERENCE_HEAD,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly settings (stored in caches); :meth:`from_dict` inverts it."""
        return {
            "representation": self.representation.to_dict(),
            "sigma_limb": self.sigma_limb,
            "sigma_joint": self.sigma_joint,
            "geometry": self.geometry,
            "alignment": self.alignment,
            "impute": self.impute,
            "head": self.head,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderConfig:
        """From :meth:`to_dict` output; ``representation`` may also be a built-in name. A
        missing ``head`` (settings recorded before it existed) means ``keep``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"render settings must be a mapping, got {type(data).__name__}")
        known = {"representation", "sigma_limb", "sigma_joint", "geometry", "alignment", "impute", "head"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown render setting(s) {unknown}; expected {sorted(known)}")
        kwargs = dict(data)
        rep = kwargs.get("representation")
        if isinstance(rep, Mapping):
            kwargs["representation"] = Representation.from_dict(rep)
        return cls(**kwargs)

    def key(self) -> str:
        """Short stable hash (12 hex digits) of the settings and :data:`RENDERER_VERSION`."""
        payload = {"render": self.to_dict(), "renderer_version": RENDERER_VERSION}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

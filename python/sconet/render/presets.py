"""Named render settings (data, not code): OpenGait's pipeline and the user's OpenGait fork.

Each preset is a :meth:`RenderConfig.to_dict`-style table; :func:`get_preset` turns it into a
:class:`RenderConfig`, which is what stores and checkpoints record (the preset's name is only a
shorthand). The settings and what is left between them and OpenGait's own maps are in
``docs/opengait.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sconet.render.settings import RenderConfig


@dataclass(frozen=True)
class Preset:
    """A named set of render settings."""

    name: str
    description: str
    settings: Mapping[str, Any]

    def config(self) -> RenderConfig:
        return RenderConfig.from_dict(self.settings)


_OPENGAIT = {
    "sigma_joint": 8.0,
    "geometry": "square",
    "alignment": "per-channel",
    "impute": "knn",
}

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in (
            Preset(
                "opengait",
                "OpenGait's pretreatment_heatmap.py with SkeletonGait's settings: full-body, "
                "sigma 8 / 8, square, per-channel, KNN imputation",
                {**_OPENGAIT, "representation": "full-body", "sigma_limb": 8.0, "head": "keep"},
            ),
            Preset(
                "opengait-sigma15-joint8",
                "the user's fork (sigma15_joint8): body-only with zeroed head scores, limb sigma "
                "15, joint sigma 8, otherwise OpenGait's",
                {**_OPENGAIT, "representation": "body-only", "sigma_limb": 15.0, "head": "zero-scores"},
            ),
        )
    }
)
"""The presets by name."""


def get_preset(name: str) -> RenderConfig:
    """The :class:`RenderConfig` of preset ``name``; ValueError naming the presets otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown render preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name].config()

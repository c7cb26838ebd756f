"""How a user states render settings: a preset name, explicit settings, or both (:class:`RenderSpec`).

Where sconet cannot know how skeleton maps were made (an OpenGait checkpoint, an imported
OpenGait heatmap tree), the user says so: ``--preset NAME`` and/or explicit settings
(``--sigma-limb 15`` ..., ``[data.render]`` keys). The preset is the base and explicit settings
override it; without a preset the base is :class:`RenderConfig`'s defaults. The statement itself
(preset name, explicit keys) is kept beside the resolved settings, so stores, checkpoints and the
ledger record what the user said, not only what it resolved to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sconet.render.settings import RenderConfig

RENDER_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RenderConfig))
"""The settings a :class:`RenderSpec` may state (the fields of :class:`RenderConfig`)."""


def preset_config(name: str) -> RenderConfig:
    """The :class:`RenderConfig` of a named preset (``ValueError`` naming the known presets)."""
    from sconet.render import get_preset  # the preset registry of sconet.render

    return get_preset(name)


@dataclass(frozen=True)
class RenderSpec:
    """A statement of render settings: ``preset`` (a name or ``None``) and ``settings`` (explicit
    :class:`RenderConfig` fields, e.g. ``{"sigma_limb": 12.0}``), explicit ones winning."""

    preset: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(RENDER_KEYS))
        if unknown:
            raise ValueError(f"unknown render setting(s) {unknown}; known: {', '.join(RENDER_KEYS)}")
        object.__setattr__(self, "settings", {k: self.settings[k] for k in RENDER_KEYS if k in self.settings})

    @classmethod
    def from_options(cls, preset: str | None = None, **settings: Any) -> RenderSpec:
        """From command-line options: ``None`` values mean "not given" and are dropped."""
        return cls(preset or None, {k: v for k, v in settings.items() if v is not None})

    @property
    def stated(self) -> bool:
        """Whether anything was stated (a preset or at least one explicit setting)."""
        return self.preset is not None or bool(self.settings)

    def resolve(self) -> RenderConfig:
        """The settings stated: the preset's (or the defaults) with the explicit ones replaced.

        Raises ``ValueError`` for an unknown preset or a bad value."""
        base = preset_config(self.preset) if self.preset is not None else RenderConfig()
        merged = {**base.to_dict(), **self.settings}
        return RenderConfig.from_dict(merged)

    def describe(self) -> str:
        """``preset opengait-sigma15-joint8``, ``preset opengait with sigma_limb=12``,
        ``settings sigma_limb=12, impute=none`` or ``nothing stated``."""
        explicit = ", ".join(f"{k}={_short(v)}" for k, v in self.settings.items())
        if self.preset is not None:
            return f"preset {self.preset}" + (f" with {explicit}" if explicit else "")
        return f"settings {explicit}" if explicit else "nothing stated"

    def to_dict(self) -> dict[str, Any]:
        """What is recorded: ``{"preset", "settings", "render"}`` (``render``: the resolved
        :meth:`RenderConfig.to_dict`, ``None`` when nothing was stated)."""
        return {
            "preset": self.preset,
            "settings": dict(self.settings),
            "render": self.resolve().to_dict() if self.stated else None,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> RenderSpec:
        if not doc:
            return cls()
        return cls(doc.get("preset"), dict(doc.get("settings") or {}))


def _short(value: Any) -> str:
    if isinstance(value, Mapping):  # a representation given as a table
        return str(value.get("name", "custom"))
    return f"{value:g}" if isinstance(value, float) else str(value)

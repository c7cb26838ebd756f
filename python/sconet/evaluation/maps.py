"""Which skeleton maps a checkpoint is evaluated on: its render settings, the store, the match.

A sconet checkpoint records the render settings of the store it was trained on. An OpenGait
checkpoint records none: the user states them (:class:`sconet.render.spec.RenderSpec`, from
``--preset`` / the render flags), and without a statement evaluation stops and says what to
state rather than guess. The settings then find the store (or check the one given with
``--cache``) and are recorded with the evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sconet.cache import CacheStore, find_cache, find_caches, open_cache
from sconet.checkpoint import Checkpoint, CheckpointError
from sconet.render.spec import RenderSpec

_MAIN_KEYS = ("representation", "sigma_limb", "sigma_joint", "geometry", "alignment", "impute")

STATE_RENDER = (
    "state how the maps it was trained on were made: --preset NAME (e.g. opengait, "
    "opengait-sigma15-joint8) or the render flags (--representation, --sigma-limb, --sigma-joint, "
    "--geometry, --alignment, --impute); they pick the cache and are recorded"
)


class RenderMismatchError(ValueError):
    """The checkpoint's skeleton maps were rendered differently from the cache's."""


def describe_render(render: Mapping[str, Any] | None) -> str:
    """A short human description of render settings (``body-only, sigma limb 15 / joint 8, ...``)."""
    if not render:
        return "unknown settings"
    rep = render.get("representation")
    rep_name = rep.get("name") if isinstance(rep, Mapping) else rep
    text = (
        f"{rep_name}, sigma limb {render.get('sigma_limb')} / joint {render.get('sigma_joint')}, "
        f"{render.get('geometry')} geometry, {render.get('alignment')} alignment, "
        f"impute {render.get('impute')}"
    )
    extra = [f"{k} {v}" for k, v in render.items() if k not in _MAIN_KEYS]
    return ", ".join([text, *extra])


def _normalise_json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass
class CheckpointMaps:
    """The maps a checkpoint is taken to have been trained on: ``render`` (settings as
    :meth:`RenderConfig.to_dict`, ``None`` = unknown), ``source`` (``"checkpoint"`` or the
    user's statement, e.g. ``"stated: preset opengait"``), ``stated`` (that statement)."""

    render: dict[str, Any] | None
    source: str
    stated: RenderSpec = field(default_factory=RenderSpec)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.render, "source": self.source, "stated": self.stated.to_dict()}


def checkpoint_maps(ckpt: Checkpoint, stated: RenderSpec | None = None) -> CheckpointMaps:
    """The render settings of ``ckpt``'s training maps: recorded (sconet) or stated (OpenGait).

    A statement for a sconet checkpoint must agree with what it records; an OpenGait checkpoint
    without one raises :class:`CheckpointError` saying what to state.
    """
    stated = stated or RenderSpec()
    if ckpt.is_sconet:
        if stated.stated:
            try:
                same = _normalise_json(stated.resolve().to_dict()) == _normalise_json(ckpt.render)
            except ValueError as exc:
                raise CheckpointError(f"{ckpt.path}: bad render statement ({exc})") from None
            if not same:
                raise CheckpointError(
                    f"{ckpt.path}: the checkpoint records its own render settings "
                    f"[{describe_render(ckpt.render)}], not {stated.describe()}; --preset and the render "
                    "flags are for OpenGait checkpoints"
                )
        return CheckpointMaps(dict(ckpt.render) if ckpt.render else None, "checkpoint")
    if not stated.stated:
        raise CheckpointError(
            f"{ckpt.path}: an OpenGait checkpoint records no render settings; {STATE_RENDER}"
        )
    try:
        render = stated.resolve().to_dict()
    except ValueError as exc:
        raise CheckpointError(f"{ckpt.path}: bad render statement ({exc})") from None
    return CheckpointMaps(render, f"stated: {stated.describe()}", stated)


def find_store(ckpt: Checkpoint, maps: CheckpointMaps, cache: str | Path | None) -> CacheStore:
    """The store to evaluate on: ``cache``, else the one matching the checkpoint's maps."""
    if cache is not None:
        return open_cache(cache)
    from sconet.render import RENDERER_VERSION, RenderConfig

    if maps.render is None:
        recorded = _recorded_store(ckpt)
        if recorded is not None:
            return recorded
        raise CheckpointError(
            f"{ckpt.path}: the checkpoint's maps have unknown render settings (an import without a "
            "statement) and its store was not found: give --cache"
        )
    try:
        render = RenderConfig.from_dict(maps.render)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{ckpt.path}: bad render settings ({exc})") from None
    if not ckpt.is_sconet:
        found = find_caches(render)
        if len(found) == 1:
            return open_cache(found[0])
        if not found:
            raise CheckpointError(
                f"{ckpt.path}: no cache with the stated render settings [{describe_render(maps.render)}]: "
                "build it with `sconet cache` and the same --preset / render flags (and --poses), "
                "or give --cache"
            )
        names = ", ".join(p.name for p in found)
        raise CheckpointError(f"{ckpt.path}: several caches have the stated settings ({names}): give --cache")
    found_path = find_cache(render, dataset=ckpt.dataset) if ckpt.dataset else find_cache(render)
    if found_path is not None:
        return open_cache(found_path)
    recorded = _recorded_store(ckpt)
    if recorded is not None:  # e.g. imported maps, never found by their settings
        return recorded
    hint = ""
    if str(ckpt.renderer_version) != str(RENDERER_VERSION):
        hint = (
            f" (the checkpoint's maps came from renderer {ckpt.renderer_version}; this sconet has "
            f"renderer {RENDERER_VERSION}, so no matching cache can be built here)"
        )
    raise CheckpointError(
        f"{ckpt.path}: no cache of dataset {ckpt.dataset!r} with the checkpoint's render settings "
        f"[{describe_render(ckpt.render)}] was found{hint}; build it with `sconet cache` or give --cache"
    )


def _recorded_store(ckpt: Checkpoint) -> CacheStore | None:
    """The store path recorded in a sconet checkpoint, if it is still there with the same fingerprint."""
    cache = ckpt.raw.get("cache") if ckpt.is_sconet else None
    path = cache.get("path") if isinstance(cache, Mapping) else None
    if not path or not Path(path).is_dir():
        return None
    try:
        store = open_cache(path)
    except Exception:  # noqa: BLE001 - damaged or replaced: not the recorded store
        return None
    return store if store.fingerprint == ckpt.cache_fingerprint else None


def check_render_match(ckpt: Checkpoint, maps: CheckpointMaps, store: CacheStore) -> list[str]:
    """Refuse a store whose maps differ from the checkpoint's; returns notes on what could not
    be checked (unknown settings on either side, another renderer)."""
    from sconet.render import RENDERER_VERSION

    s_render = _normalise_json(store.attrs.get("render"))
    s_ver = str(store.attrs.get("renderer_version"))
    same_store = ckpt.is_sconet and ckpt.cache_fingerprint == store.fingerprint
    if maps.render is None or s_render is None:
        if same_store:
            return []
        side = "checkpoint's" if maps.render is None else "store's"
        return [
            f"the {side} render settings are unknown (maps imported without a statement): whether the "
            f"store's maps [{describe_render(s_render)}] match the checkpoint's "
            f"[{describe_render(maps.render)}] could not be checked"
        ]
    c_render = _normalise_json(maps.render)
    c_ver = str(ckpt.renderer_version) if ckpt.is_sconet else None
    if c_render != s_render or (c_ver is not None and c_ver != s_ver):
        what = "trained on" if ckpt.is_sconet else f"stated ({maps.source}) to be trained on"
        c_desc = describe_render(c_render) + (f"; renderer {c_ver}" if c_ver else "")
        raise RenderMismatchError(
            f"{ckpt.path}: refused: the checkpoint was {what} skeleton maps rendered with "
            f"[{c_desc}] but the cache {store.path} holds [{describe_render(s_render)}; renderer {s_ver}]; "
            "evaluate on a cache built with the checkpoint's settings"
        )
    if c_ver is None and s_ver not in (str(RENDERER_VERSION), "imported"):
        return [f"the cache was rendered by renderer {s_ver}, not this sconet's {RENDERER_VERSION}"]
    return []

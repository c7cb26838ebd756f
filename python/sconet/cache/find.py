"""Finding the store that matches given render settings (and inputs) under a cache root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sconet import render as _render
from sconet._paths import cache_root
from sconet.cache.format import _PARTIAL_SUFFIX, FORMAT_VERSION, _read_root_attrs, _store_name, dataset_name
from sconet.render import RenderConfig

# --------------------------------------------------------------------------------------------
# find
# --------------------------------------------------------------------------------------------


def _render_dict(render: RenderConfig) -> dict[str, Any]:
    return json.loads(json.dumps(render.to_dict(), default=str))


def find_cache(
    render_config: RenderConfig | Path | str | None = None,
    poses: Path | str | RenderConfig | None = None,
    root: Path | str | None = None,
    *,
    dataset: str | dict[str, Any] | None = None,
    fingerprint: str | None = None,
) -> Path | None:
    """The complete store for these render settings and dataset, or ``None``.

    ``poses``: the dataset root the store was built from (``None`` = built-in synthetic);
    ``dataset``: a dataset name instead (as in the store name / ``attrs["dataset"]["name"]``);
    ``root``: cache root (default :func:`cache_root`); ``fingerprint``: only a store with this
    store fingerprint (e.g. the one recorded in a checkpoint). The default store path is tried
    first, then every store under ``<root>/stores`` whose attributes match (newest first). The
    inputs are not re-read: a store found here is the one built for these settings from that
    dataset, not re-checked against the current pose files (``build_cache`` does that).

    Also accepts the older positional order
    ``find_cache(cache_root, render_config, dataset)``.
    """
    if not isinstance(render_config, RenderConfig) and isinstance(poses, RenderConfig):
        # the older positional order: (cache_root, render_config, dataset)
        root, render_config, dataset_arg = render_config, poses, root
        poses = None
        if dataset is None and dataset_arg is not None:
            dataset = str(dataset_arg)
    if not isinstance(render_config, RenderConfig):
        raise TypeError("find_cache needs a RenderConfig")
    if isinstance(poses, RenderConfig):
        raise TypeError("find_cache: poses is a dataset root, not a second RenderConfig")
    base = Path(root).expanduser() if root is not None else Path(cache_root())
    if isinstance(dataset, dict):  # attrs["dataset"] as stored: {"name", "source"}
        dataset = dataset.get("name")
    name = str(dataset) if dataset is not None else dataset_name(poses)
    want_render = _render_dict(render_config)
    want_renderer = str(_render.RENDERER_VERSION)

    def matches(p: Path) -> str | None:
        attrs = _read_root_attrs(p)
        if not attrs or attrs.get("complete") is not True or not attrs.get("fingerprint"):
            return None
        if attrs.get("format_version") != FORMAT_VERSION:
            return None
        if fingerprint is not None and attrs.get("fingerprint") != fingerprint:
            return None
        if attrs.get("renderer_version") != want_renderer:
            return None
        if json.loads(json.dumps(attrs.get("render"), default=str)) != want_render:
            return None
        ds = attrs.get("dataset") or {}
        if ds.get("name") != name:
            return None
        return str(attrs.get("created", ""))

    first = base / "stores" / _store_name(name, render_config)
    if first.is_dir() and matches(first) is not None:
        return first
    stores = base / "stores"
    if not stores.is_dir():
        return None
    found = []
    for p in stores.iterdir():
        if p.is_dir() and not p.name.endswith(_PARTIAL_SUFFIX) and not p.name.startswith("."):
            created = matches(p)
            if created is not None:
                found.append((created, p))
    if not found:
        return None
    found.sort(reverse=True)
    return found[0][1]


def find_caches(render_config: RenderConfig, root: Path | str | None = None) -> list[Path]:
    """Every complete store under ``<root>/stores`` rendered by this sconet with these settings,
    whatever its dataset (newest first). For checkpoints that name no dataset (OpenGait's)."""
    base = Path(root).expanduser() if root is not None else Path(cache_root())
    stores = base / "stores"
    if not stores.is_dir():
        return []
    want_render = _render_dict(render_config)
    found = []
    for p in stores.iterdir():
        if not p.is_dir() or p.name.endswith(_PARTIAL_SUFFIX) or p.name.startswith("."):
            continue
        attrs = _read_root_attrs(p)
        if (
            attrs
            and attrs.get("complete") is True
            and attrs.get("format_version") == FORMAT_VERSION
            and attrs.get("renderer_version") == str(_render.RENDERER_VERSION)
            and json.loads(json.dumps(attrs.get("render"), default=str)) == want_render
        ):
            found.append((str(attrs.get("created", "")), p))
    return [p for _, p in sorted(found, reverse=True)]

"""Contact sheets of cached skeleton maps (PNG, Pillow).

:func:`contact_sheet` draws evenly spaced frames of one cached sequence as three rows: the limb
map (channel 0, grey), the joint map (channel 1, grey) and an overlay (limbs in blue, joints in
orange laid over them on black, which shows at a glance whether the two channels are
registered), with a
caption naming the sequence, its label, the store and the render settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sconet.cache import CacheStore, open_cache

__all__ = ["LIMB_RGB", "JOINT_RGB", "contact_sheet", "overlay_rgb", "pick_frames"]

LIMB_RGB = (40, 150, 255)
"""Overlay colour of the limb map."""
JOINT_RGB = (255, 150, 20)
"""Overlay colour of the joint map."""

_BG = (24, 24, 24)
_FG = (235, 235, 235)
_DIM = (150, 150, 150)
_GAP = 4


def pick_frames(n_frames: int, count: int) -> np.ndarray:
    """``count`` evenly spaced frame indices in ``[0, n_frames)`` (first and last included)."""
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    count = max(1, min(int(count), n_frames))
    if count == 1:
        return np.zeros(1, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n_frames - 1, count)).astype(np.int64))


def overlay_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 ``[2, H, W]`` (limb, joint) -> uint8 ``[H, W, 3]``: limbs blue, joints orange
    laid over them (alpha = joint intensity), black background."""
    limb = frame[0].astype(np.float32)[..., None] / 255.0
    joint = frame[1].astype(np.float32)[..., None] / 255.0
    rgb = limb * np.array(LIMB_RGB, np.float32) * (1.0 - joint) + joint * np.array(JOINT_RGB, np.float32)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _settings_text(store: CacheStore) -> str:
    try:
        rc = store.render_config
        if rc is None:
            return f"imported maps, settings {(store.provenance or {}).get('described_as', 'unknown')}"
        return (
            f"{rc.representation.name}, sigma limb {rc.sigma_limb:g} / joint {rc.sigma_joint:g}, "
            f"{rc.geometry}, {rc.alignment} alignment, impute {rc.impute}"
            + ("" if rc.head == "keep" else f", head {rc.head}")
        )
    except Exception:  # a store written by another version: show the raw settings
        return str(store.attrs.get("render", ""))


def contact_sheet(
    store: CacheStore | Path | str,
    index_or_id: int | str,
    out_png: Path | str,
    frames: int = 16,
    scale: int = 2,
) -> Path:
    """Write a PNG contact sheet of one cached sequence and return its path.

    ``store``: an open :class:`CacheStore` or a store path; ``index_or_id``: sequence index or
    id (``id/view`` when an id has several views); ``frames``: how many evenly spaced frames;
    ``scale``: integer magnification of the 64 x 64 maps (nearest neighbour).
    """
    if not isinstance(store, CacheStore):
        store = open_cache(store)
    if isinstance(index_or_id, str) and not index_or_id.isdigit():
        i = store.index_of(index_or_id)
    elif isinstance(index_or_id, str):
        # ids are digit strings ("00000"): look them up as ids first, then as an index
        try:
            i = store.index_of(index_or_id)
        except KeyError:
            i = store._resolve(int(index_or_id))
    else:
        i = store._resolve(index_or_id)
    scale = max(1, int(scale))
    maps = store.sequence(i)
    t = maps.shape[0]
    picks = pick_frames(t, frames)
    tile = 64 * scale
    rows = [
        ("limb", [np.repeat(maps[k, 0][..., None], 3, axis=2) for k in picks]),
        ("joint", [np.repeat(maps[k, 1][..., None], 3, axis=2) for k in picks]),
        ("overlay", [overlay_rgb(maps[k]) for k in picks]),
    ]
    font = _font(12)
    small = _font(10)
    label_w = 60
    caption_h = 44
    index_h = 14
    width = label_w + len(picks) * (tile + _GAP) + _GAP
    width = max(width, 640)
    height = caption_h + index_h + len(rows) * (tile + _GAP) + _GAP
    sheet = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(sheet)

    label = store.label_name(i)
    line1 = (
        f"id {store.ids[i]}  view {store.views[i]}  label {label}  "
        f"(sequence {i}, {t} frames, {len(picks)} shown)"
    )
    line2 = f"{_settings_text(store)}   store {store.path.name}"
    draw.text((_GAP + 2, 6), line1, fill=_FG, font=font)
    draw.text((_GAP + 2, 24), line2, fill=_DIM, font=small)

    y0 = caption_h + index_h
    for c, k in enumerate(picks):
        x = label_w + c * (tile + _GAP)
        draw.text((x + 2, caption_h), f"t={int(k)}", fill=_DIM, font=small)
    for r, (name, tiles) in enumerate(rows):
        y = y0 + r * (tile + _GAP)
        draw.text((_GAP + 2, y + tile // 2 - 6), name, fill=_FG, font=font)
        for c, img in enumerate(tiles):
            x = label_w + c * (tile + _GAP)
            im = Image.fromarray(np.ascontiguousarray(img))
            if scale != 1:
                im = im.resize((tile, tile), Image.Resampling.NEAREST)
            sheet.paste(im, (x, y))
    out = Path(out_png).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out

"""Line charts drawn with Pillow (no plotting library): curves of several runs against iterations.

:func:`plot_panels` draws one PNG with stacked panels (e.g. test macro-F1, test accuracy,
training loss), one colour per run, an optional horizontal reference line with a shaded band
(the baseline's value and interval), and a cross where a run was stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["Series", "Panel", "plot_panels", "nice_ticks"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Series:
    """One run's points ``(x, y)`` in a panel; ``stop_x``: where it was stopped (a cross)."""

    label: str
    points: list[tuple[float, float]]
    stop_x: float | None = None


@dataclass
class Panel:
    title: str
    series: list[Series] = field(default_factory=list)
    reference: float | None = None
    band: tuple[float, float] | None = None
    reference_label: str = ""
    percent: bool = False


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float, percent: bool) -> str:
    if percent:
        return f"{100 * v:.0f}" if abs(100 * v - round(100 * v)) < 1e-6 else f"{100 * v:.1f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _draw_panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    panel: Panel,
    colours: dict[str, str],
    x_range: tuple[float, float],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    left, top, right, bottom = box
    ys = [y for s in panel.series for _, y in s.points if math.isfinite(y)]
    for extra in (panel.reference, *(panel.band or ())):
        if extra is not None:
            ys.append(extra)
    if not ys:
        ys = [0.0, 1.0]
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.08 or max(abs(y_hi) * 0.1, 0.05)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = x_range

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_lo) / (x_hi - x_lo) * (right - left),
            bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top),
        )

    draw.text((left, top - 16), panel.title, fill="black", font=font)
    if panel.band is not None:
        (bx0, by0), (bx1, by1) = px(x_lo, panel.band[1]), px(x_hi, panel.band[0])
        draw.rectangle((bx0, by0, bx1, by1), fill="#e8e8e8")
    for t in nice_ticks(y_lo, y_hi):
        _, y = px(x_lo, t)
        draw.line((left, y, right, y), fill="#dddddd")
        draw.text((left - 6, y), _fmt(t, panel.percent), fill="#444444", font=font, anchor="rm")
    for t in nice_ticks(x_lo, x_hi, 6):
        x, _ = px(t, y_lo)
        draw.line((x, bottom, x, bottom + 4), fill="#444444")
        draw.text((x, bottom + 6), _fmt(t, False), fill="#444444", font=font, anchor="mt")
    draw.rectangle((left, top, right, bottom), outline="#444444")
    if panel.reference is not None:
        _, y = px(x_lo, panel.reference)
        for x0 in range(left, right, 10):  # dashed
            draw.line((x0, y, min(x0 + 5, right), y), fill="black", width=1)
        if panel.reference_label:
            draw.text((right - 4, y - 2), panel.reference_label, fill="black", font=font, anchor="rb")
    for s in panel.series:
        pts = [px(x, y) for x, y in s.points if math.isfinite(y)]
        colour = colours[s.label]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts if len(pts) <= 60 else []:
            draw.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=colour)
        if s.stop_x is not None and s.points:
            y_at = min(s.points, key=lambda p: abs(p[0] - s.stop_x))[1]  # type: ignore[operator]
            x, y = px(s.stop_x, y_at)
            draw.line((x - 6, y - 6, x + 6, y + 6), fill=colour, width=3)
            draw.line((x - 6, y + 6, x + 6, y - 6), fill=colour, width=3)


def plot_panels(
    panels: Sequence[Panel], path: str | Path, *, title: str = "", width: int = 900, panel_height: int = 230
) -> Path:
    """Write the panels, stacked, to a PNG at ``path`` (shared x axis: iterations)."""
    path = Path(path)
    font = ImageFont.load_default()
    labels: list[str] = []
    for p in panels:
        for s in p.series:
            if s.label not in labels:
                labels.append(s.label)
    colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    xs = [x for p in panels for s in p.series for x, _ in s.points]
    x_range = (min(xs, default=0.0), max(xs, default=1.0))
    if x_range[1] <= x_range[0]:
        x_range = (x_range[0], x_range[0] + 1.0)
    legend_rows = math.ceil(len(labels) / 3) if labels else 0
    header = 30 + 16 * legend_rows
    height = header + len(panels) * (panel_height + 40) + 20
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((12, 8), title, fill="black", font=font)
    for i, label in enumerate(labels):
        x, y = 70 + (i % 3) * 270, 26 + 16 * (i // 3)
        draw.line((x, y + 5, x + 24, y + 5), fill=colours[label], width=3)
        draw.text((x + 30, y), label[:40], fill="black", font=font)
    for i, panel in enumerate(panels):
        top = header + 20 + i * (panel_height + 40)
        _draw_panel(draw, (70, top, width - 20, top + panel_height), panel, colours, x_range, font)
    draw.text((width // 2, height - 14), "iteration", fill="black", font=font, anchor="mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path

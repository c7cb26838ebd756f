"""Interpretation of DRF predictions: the PAV each sequence fed the model and the PGA gates.

``sconet eval --explain`` collects, per sequence, the raw postural asymmetry vector (8 pairs x
3 metrics, from the cache), the normalised one the model saw (training-id min-max, clipped to
[0, 1]) and the gates PAV-guided attention applied: the channel gate (``embed_dim`` values) and
the part gate (one value per horizontal part, part 1 = top of the map = head). They go into the
``--json`` document (:meth:`Explanations.per_sequence`), a screen summary
(:meth:`Explanations.format`) and, with ``--explain-dir``, one PNG per sequence
(:func:`render_png`): skeleton-map frames (limbs blue, joints orange, as ``sconet show``) with the part strips
marked, the 16 part gates as bars beside them, and the PAV as an 8 x 3 table (raw value, and the
normalised one as text and cell shade). Drawing uses Pillow only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sconet.classes import CLASSES
from sconet.preview import overlay_rgb
from sconet.render import PAV_METRICS, PAV_PAIR_NAMES

__all__ = ["Explanations", "render_png", "write_pngs", "png_name"]

SCALE = 4  # pixels per skeleton-map pixel in the PNG
METRIC_LABELS = ("height diff", "midline dev", "tilt (deg)")
_SHOWN_LINES = 12  # per-sequence lines on screen (the JSON holds all)


@dataclass
class Explanations:
    """Per-sequence PAV and PGA gates of one evaluation, in bank order.

    ``pav_raw`` float32 ``[N, 8, 3]``; ``pav_norm`` ``[N, 8, 3]`` or ``None`` (no statistics);
    ``channel_gate`` ``[N, C]`` / ``part_gate`` ``[N, parts]`` or ``None`` (gate off, or no PGA);
    ``arch`` / ``pga``: the model's; ``png_dir``: where PNGs were written, if anywhere.
    """

    ids: list[str]
    labels: np.ndarray
    pred: np.ndarray
    logits: np.ndarray
    pav_raw: np.ndarray
    pav_norm: np.ndarray | None
    channel_gate: np.ndarray | None
    part_gate: np.ndarray | None
    arch: str
    pga: str
    parts: int = 16
    png_dir: Path | None = None

    @classmethod
    def from_predictions(cls, preds: Any, bank: Any, normalizer: Any, model_config: Any) -> Explanations:
        """From :class:`sconet.evaluation.Predictions` (run with ``gates=True``), the evaluated
        :class:`sconet.stream.FrameBank` and the PAV normaliser (or ``None``)."""
        raw = np.asarray(bank.pav, dtype=np.float32)
        return cls(
            ids=list(preds.ids),
            labels=np.asarray(preds.labels),
            pred=np.asarray(preds.pred),
            logits=np.asarray(preds.logits),
            pav_raw=raw,
            pav_norm=None if normalizer is None else normalizer(raw),
            channel_gate=preds.channel_gate,
            part_gate=preds.part_gate,
            arch=str(model_config.arch),
            pga=str(model_config.pga) if model_config.arch == "drf" else "none",
            parts=int(model_config.parts),
        )

    def __len__(self) -> int:
        return len(self.ids)

    # -- JSON -----------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """What the per-sequence arrays mean (the ``explain`` entry of the ``--json`` document)."""
        return {
            "arch": self.arch,
            "pga": self.pga,
            "pav_pairs": list(PAV_PAIR_NAMES),
            "pav_metrics": list(PAV_METRICS),
            "pav_normalised": self.pav_norm is not None,
            "channel_gate": self.channel_gate is not None,
            "part_gate": self.part_gate is not None,
            "parts": "part 1 = top horizontal strip of the skeleton map (head) .. last = bottom (feet)",
            "png_dir": str(self.png_dir) if self.png_dir is not None else None,
        }

    def per_sequence(self) -> list[dict[str, Any]]:
        """One dict per sequence: ``pav_raw`` / ``pav_norm`` (8 x 3 nested lists), ``channel_gate``,
        ``part_gate`` (lists or ``None``), rounded to 6 digits."""
        out = []
        for i in range(len(self)):
            out.append(
                {
                    "pav_raw": _rounded(self.pav_raw[i]),
                    "pav_norm": _rounded(self.pav_norm[i]) if self.pav_norm is not None else None,
                    "channel_gate": _rounded(self.channel_gate[i]) if self.channel_gate is not None else None,
                    "part_gate": _rounded(self.part_gate[i]) if self.part_gate is not None else None,
                }
            )
        return out

    # -- screen -----------------------------------------------------------------------------------
    def format(self) -> str:
        """Summary: part gate by true class, channel-gate spread, mean normalised PAV by class,
        and the first sequences one line each."""
        lines = [f"explain: arch {self.arch}, PGA gates {self.pga}"]
        if self.part_gate is None and self.channel_gate is None:
            lines.append("  no PGA gates (the model does not apply any); PAV only")
        labels = self.labels
        if self.part_gate is not None:
            parts = self.part_gate.shape[1]
            lines.append(f"part gate, mean by true class (part 1 = head .. {parts} = feet):")
            lines.append(f"  {'class':9} {'n':>4} " + " ".join(f"{p + 1:>4}" for p in range(parts)))
            for c, name in enumerate(CLASSES):
                sel = labels == c
                if sel.any():
                    mean = self.part_gate[sel].mean(0)
                    lines.append(f"  {name:9} {int(sel.sum()):>4} " + " ".join(f"{v:4.2f}" for v in mean))
        if self.channel_gate is not None:
            lines.append("channel gate by true class (mean / min / max over channels and sequences):")
            for c, name in enumerate(CLASSES):
                sel = labels == c
                if sel.any():
                    g = self.channel_gate[sel]
                    lines.append(
                        f"  {name:9} {int(sel.sum()):>4}  {g.mean():.3f} / {g.min():.3f} / {g.max():.3f}"
                    )
        pav = self.pav_norm if self.pav_norm is not None else self.pav_raw
        kind = "normalised" if self.pav_norm is not None else "raw"
        present = [(c, name) for c, name in enumerate(CLASSES) if (labels == c).any()]
        lines.append(f"mean {kind} PAV by true class (height diff / midline dev / tilt):")
        lines.append(f"  {'pair':10} " + " ".join(f"{name:>16}" for _, name in present))
        fmt = "{:.2f}/{:.2f}/{:.2f}" if kind == "normalised" else "{:.1f}/{:.1f}/{:.0f}"
        means = {c: pav[labels == c].mean(0) for c, _ in present}
        for r, pair in enumerate(PAV_PAIR_NAMES):
            lines.append(f"  {pair:10} " + " ".join(f"{fmt.format(*means[c][r]):>16}" for c, _ in present))
        lines.append("per sequence (id, true -> predicted, most attended parts, largest PAV entry):")
        for i in range(min(len(self), _SHOWN_LINES)):
            top = ""
            if self.part_gate is not None:
                order = np.argsort(-self.part_gate[i])[:3]
                top = "parts " + ", ".join(f"{p + 1} ({self.part_gate[i, p]:.2f})" for p in order)
            r, m = (int(v) for v in np.unravel_index(int(np.argmax(pav[i])), pav[i].shape))
            big = f"{PAV_PAIR_NAMES[r]} {METRIC_LABELS[m]} {pav[i, r, m]:.2f}"
            lines.append(
                f"  {self.ids[i]:>10}  {CLASSES[int(self.labels[i])]:>8} -> {CLASSES[int(self.pred[i])]:<8}  "
                f"{top + '; ' if top else ''}PAV {big}"
            )
        if len(self) > _SHOWN_LINES:
            lines.append(f"  ... {len(self) - _SHOWN_LINES} more (every sequence is in --json)")
        if self.png_dir is not None:
            lines.append(f"PNG per sequence: {self.png_dir}")
        return "\n".join(lines)


def _rounded(a: np.ndarray) -> list[Any]:
    return np.round(np.asarray(a, dtype=np.float64), 6).tolist()


# ----------------------------------------------------------------------------------------------
# PNG
# ----------------------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _colour_map(frame: np.ndarray) -> Image.Image:
    """``uint8 [C, H, W]`` -> RGB, scaled: the preview's overlay (limbs blue, joints orange)."""
    if frame.shape[0] == 2:
        rgb = overlay_rgb(frame)
    else:
        rgb = np.repeat(frame[0][..., None], 3, axis=-1)
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return img.resize((img.width * SCALE, img.height * SCALE), Image.Resampling.NEAREST)


def _heat(v: float) -> tuple[int, int, int]:
    """0 -> pale blue, 0.5 -> white, 1 -> red (for gates and normalised PAV)."""
    v = float(min(1.0, max(0.0, v)))
    if v < 0.5:
        t = v / 0.5
        return (int(90 + 165 * t), int(140 + 115 * t), 255)
    t = (v - 0.5) / 0.5
    return (255, int(255 - 175 * t), int(255 - 195 * t))


def render_png(
    frames: np.ndarray,
    *,
    title: str,
    pav_raw: np.ndarray,
    pav_norm: np.ndarray | None,
    part_gate: np.ndarray | None,
    channel_gate: np.ndarray | None = None,
    subtitle: str = "",
    n_frames: int = 3,
) -> Image.Image:
    """One explanation image.

    ``frames``: the sequence's skeleton maps as the model saw them, uint8 ``[T, C, H, W]``;
    three frames spread over the sequence and the maximum over all frames (what temporal
    pooling sees) are shown, with the horizontal part strips marked; the part gates are drawn as
    bars aligned with their strips; the PAV table lists each pair's raw metrics with the
    normalised value beneath (cell shade = normalised value, blue 0 .. red 1).
    """
    frames = np.asarray(frames)
    t, _, h, w = frames.shape
    parts = len(part_gate) if part_gate is not None else 16
    f_small, f_text, f_title = _font(11), _font(13), _font(16)
    picks = sorted(set(int(round(x)) for x in np.linspace(0, t - 1, n_frames + 2)[1:-1])) or [0]
    panels = [(f"frame {k + 1}/{t}", _colour_map(frames[k])) for k in picks]
    panels.append((f"max over {t} frames", _colour_map(frames.max(axis=0))))
    pw, ph = w * SCALE, h * SCALE
    gap, margin = 10, 14
    bar_w, label_w = 170, 34
    top = 64
    maps_w = len(panels) * (pw + gap)
    table_row, table_head = 34, 22
    table_h = table_head + table_row * len(PAV_PAIR_NAMES) + 8
    width = margin * 2 + label_w + maps_w + bar_w + 60
    height = top + ph + 26 + 28 + table_h + margin
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((margin, 10), title, fill=(0, 0, 0), font=f_title)
    if subtitle:
        d.text((margin, 34), subtitle, fill=(70, 70, 70), font=f_text)

    strip = ph / parts
    x0 = margin + label_w
    for p in range(parts):  # part numbers at the left of the strips
        d.text((margin, top + p * strip + strip / 2 - 6), f"{p + 1:>2}", fill=(90, 90, 90), font=f_small)
    for k, (caption, panel) in enumerate(panels):
        px = x0 + k * (pw + gap)
        img.paste(panel, (px, top))
        for p in range(1, parts):  # part boundaries
            y = int(round(top + p * strip))
            d.line([(px, y), (px + pw - 1, y)], fill=(70, 70, 70), width=1)
        d.rectangle([px - 1, top - 1, px + pw, top + ph], outline=(120, 120, 120))
        d.text((px, top + ph + 4), caption, fill=(40, 40, 40), font=f_small)

    bx = x0 + maps_w + 6
    d.text((bx, top - 18), "part gate", fill=(0, 0, 0), font=f_text)
    d.line([(bx, top), (bx, top + ph)], fill=(0, 0, 0), width=1)
    if part_gate is None:
        d.text((bx + 6, top + ph / 2 - 8), "(no part gate)", fill=(90, 90, 90), font=f_text)
    else:
        for p, g in enumerate(part_gate):
            y0, y1 = top + p * strip + 1, top + (p + 1) * strip - 1
            d.rectangle(
                [bx + 1, y0, bx + 1 + max(1, int(g * bar_w)), y1], fill=_heat(float(g)), outline=(60, 60, 60)
            )
            d.text((bx + bar_w + 6, y0 + strip / 2 - 7), f"{g:.2f}", fill=(0, 0, 0), font=f_small)
        for v in (0.5, 1.0):  # reference ticks
            xv = bx + 1 + int(v * bar_w)
            d.line([(xv, top), (xv, top + ph)], fill=(170, 170, 170), width=1)
    if channel_gate is not None:
        cg = np.asarray(channel_gate)
        d.text(
            (bx, top + ph + 4),
            f"channel gate: mean {cg.mean():.2f}, {cg.min():.2f}..{cg.max():.2f}",
            fill=(40, 40, 40),
            font=f_small,
        )

    ty = top + ph + 30
    d.text((margin, ty), "PAV (raw; normalised below, cell shade = normalised)", fill=(0, 0, 0), font=f_text)
    ty += 20
    col0, colw = 90, 120
    d.text((margin, ty), "pair", fill=(0, 0, 0), font=f_small)
    for m, name in enumerate(METRIC_LABELS):
        d.text((margin + col0 + m * colw + 6, ty), name, fill=(0, 0, 0), font=f_small)
    ty += table_head - 4
    for r, pair in enumerate(PAV_PAIR_NAMES):
        y = ty + r * table_row
        d.text((margin, y + 9), pair, fill=(0, 0, 0), font=f_text)
        for m in range(len(METRIC_LABELS)):
            cx = margin + col0 + m * colw
            norm = None if pav_norm is None else float(pav_norm[r, m])
            fill = _heat(norm) if norm is not None else (245, 245, 245)
            d.rectangle([cx, y, cx + colw - 4, y + table_row - 3], fill=fill, outline=(150, 150, 150))
            d.text((cx + 6, y + 2), f"{float(pav_raw[r, m]):.2f}", fill=(0, 0, 0), font=f_text)
            if norm is not None:
                d.text((cx + 6, y + 17), f"{norm:.2f}", fill=(60, 60, 60), font=f_small)
    return img


def png_name(index: int, sequence_id: str) -> str:
    """``0007-00042.png``: bank position (unique) and the id (unsafe characters replaced)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(sequence_id))[:80]
    return f"{index:04d}-{safe}.png"


def write_pngs(
    explanations: Explanations, bank: Any, out_dir: str | Path, indices: Sequence[int] | None = None
) -> list[Path]:
    """One PNG per sequence of ``bank`` (or those at ``indices``) into ``out_dir`` (created)."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    e = explanations
    written = []
    for i in range(len(e)) if indices is None else indices:
        frames, _ = bank.sequences([i])
        probs = np.exp(16.0 * e.logits[i]) / np.exp(16.0 * e.logits[i]).sum()
        title = f"{e.ids[i]}: true {CLASSES[int(e.labels[i])]}, predicted {CLASSES[int(e.pred[i])]}"
        subtitle = f"{e.arch} (PGA gates: {e.pga})  part-averaged logits x16 softmax: " + ", ".join(
            f"{c} {p:.2f}" for c, p in zip(CLASSES, probs, strict=True)
        )
        img = render_png(
            frames,
            title=title,
            subtitle=subtitle,
            pav_raw=e.pav_raw[i],
            pav_norm=None if e.pav_norm is None else e.pav_norm[i],
            part_gate=None if e.part_gate is None else e.part_gate[i],
            channel_gate=None if e.channel_gate is None else e.channel_gate[i],
        )
        path = out / png_name(i, e.ids[i])
        img.save(path, optimize=False)
        written.append(path)
    return written

"""Screening one subject: ``sconet predict pose.pkl --ckpt best.pt``.

:class:`Screener` loads a sconet checkpoint once (model on the CPU in eval mode, its render
settings, width cut, evaluation length, PAV normalisation and training PAV reference); calling
:meth:`Screener.screen` on a pose file

1. reads it with :func:`sconet.data.load_pose_file`: the cache's safe reader and validation (a
   refused pickle, a wrong shape, NaN ... raise :class:`sconet.data.PoseError` naming the file);
2. renders the skeleton maps of the first ``data.eval_max_frames`` frames (only those: a long
   recording is not rendered whole) with the checkpoint's render settings (Rust, all cores) and
   applies the recipe's width cut, as :func:`sconet.evaluation.evaluate_checkpoint` does with
   cached maps;
3. computes the raw PAV of the whole sequence (as the cache does) and, when the checkpoint
   stores a PAV normalisation (DRF), the normalised PAV (the DRF model's input);
4. runs the model: class probabilities are ``softmax(loss.scale x part-averaged cosine
   logits)`` (the logit scale the model was trained with); their argmax is exactly the class
   the evaluation predicts.

PAV read-out rule
-----------------
A postural asymmetry (pair x metric, e.g. shoulders x height difference) is **large** when the
subject's raw value is above the 95th percentile of the same value over the *healthy*
(``negative``) training sequences of the checkpoint's split, i.e. fewer than 1 in 20 healthy
training subjects show that much asymmetry. Each value is also given as a percentile among
those healthy subjects (interpolated from 21 stored quantiles). Raw values are compared, not
min-max normalised ones: the DRF normalisation spans all classes (its maximum is a scoliotic
subject), so it says little about "unusual for a healthy subject". The quantiles are stored in
checkpoints as ``pav_stats`` (:func:`pav_reference`); for older checkpoints they are computed
from the training ids of the matching cache when one is found, else no value is flagged.
The read-out describes the pose sequence; it is not what the (non-DRF) model looked at.
"""

from __future__ import annotations

import dataclasses
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sconet.classes import CLASSES
from sconet.stream import pav_reference
from sconet.video.backends import describe_pose_source

if TYPE_CHECKING:
    from sconet.render.spec import RenderSpec

__all__ = [
    "LARGE_PERCENTILE",
    "Asymmetry",
    "Screener",
    "ScreenResult",
    "describe_pose_source",
    "pav_reference",
    "render_first_frames",
    "screen",
    "write_report",
]

LARGE_PERCENTILE = 95.0
"""An asymmetry above this percentile of the healthy training subjects is reported as large."""


@dataclass
class Asymmetry:
    """One PAV entry: raw ``value``; healthy training ``median`` and ``p95``; the value's
    ``percentile`` among healthy training subjects (``None`` without a reference); ``large``."""

    pair: str
    metric: str
    value: float
    normalized: float | None = None
    median: float | None = None
    p95: float | None = None
    percentile: float | None = None
    large: bool = False

    @property
    def name(self) -> str:
        return f"{self.pair} {self.metric.replace('_', ' ')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "metric": self.metric,
            "value": round(self.value, 4),
            "normalized": None if self.normalized is None else round(self.normalized, 4),
            "healthy_median": None if self.median is None else round(self.median, 4),
            "healthy_p95": None if self.p95 is None else round(self.p95, 4),
            "percentile": None if self.percentile is None else round(self.percentile, 1),
            "large": self.large,
        }


@dataclass
class ScreenResult:
    """What :meth:`Screener.screen` found; ``to_dict()`` is the ``--json`` document."""

    source: str
    checkpoint: str
    iteration: int
    frames: int
    frames_used: int
    probabilities: dict[str, float]
    predicted: str
    logits: list[float]
    asymmetries: list[Asymmetry]
    reference: str
    render: str
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    maps: np.ndarray | None = field(default=None, repr=False)
    pose_source: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def large(self) -> list[Asymmetry]:
        return sorted((a for a in self.asymmetries if a.large), key=lambda a: -(a.percentile or 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "checkpoint": self.checkpoint,
            "iteration": self.iteration,
            "frames": self.frames,
            "frames_used": self.frames_used,
            "predicted": self.predicted,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "logits": [round(v, 6) for v in self.logits],
            "pav": [a.to_dict() for a in self.asymmetries],
            "large_asymmetries": [a.name for a in self.large],
            "rule": (
                f"large = raw value above the {LARGE_PERCENTILE:g}th percentile of the healthy (negative) "
                f"training sequences ({self.reference})"
            ),
            "render": self.render,
            "seconds": {k: round(v, 4) for k, v in self.timings.items()},
            "notes": list(self.notes),
            "pose_source": self.pose_source,
            "warnings": list(self.warnings),
        }

    def format(self) -> str:
        probs = "  ".join(f"{c} {100 * p:.1f}%" for c, p in self.probabilities.items())
        lines = [
            f"pose: {self.source} ({self.frames} frames, first {self.frames_used} used)",
            *([f"pose source: {describe_pose_source(self.pose_source)}"] if self.pose_source else []),
            f"checkpoint: {self.checkpoint} (iteration {self.iteration}; {self.render})",
            "",
            f"prediction: {self.predicted}   ({probs})",
            *(f"WARNING: {w}" for w in self.warnings),
            "",
            "postural asymmetry (raw PAV; [healthy training median / 95th pct]; percentile among healthy; "
            "! = large)",
        ]
        metrics = list(dict.fromkeys(a.metric for a in self.asymmetries))
        head = f"{'pair':<11}" + "".join(f"{m.replace('_', ' '):>30}" for m in metrics)
        lines.append(head)
        pairs = list(dict.fromkeys(a.pair for a in self.asymmetries))
        table = {(a.pair, a.metric): a for a in self.asymmetries}
        for pair in pairs:
            cells = []
            for m in metrics:
                a = table[(pair, m)]
                ref = f"[{a.median:.2f}/{a.p95:.2f}]" if a.p95 is not None else ""
                pct = f"{a.percentile:3.0f}%" if a.percentile is not None else ""
                cells.append(f"{a.value:7.2f} {ref:>13} {pct:>4}{'!' if a.large else ' '}")
            lines.append(f"{pair:<11}" + "".join(f"{c:>30}" for c in cells))
        large = self.large
        lines.append("")
        if large:
            lines.append(
                "large asymmetries: " + ", ".join(f"{a.name} ({a.percentile:.0f}th pct)" for a in large)
            )
        else:
            lines.append(
                "large asymmetries: none"
                if any(a.p95 is not None for a in self.asymmetries)
                else "large asymmetries: not assessed (no training reference)"
            )
        lines.append(
            f"rule: above the {LARGE_PERCENTILE:g}th percentile of the healthy training sequences "
            f"({self.reference})"
        )
        lines.extend(f"note: {n}" for n in self.notes)
        t = self.timings
        lines.append(
            f"time: read {1000 * t.get('read', 0):.0f} ms, render {1000 * t.get('render', 0):.0f} ms, "
            f"PAV {1000 * t.get('pav', 0):.1f} ms, model {1000 * t.get('model', 0):.0f} ms, "
            f"total {1000 * t.get('total', 0):.0f} ms"
        )
        return "\n".join(lines)


class Screener:
    """A sconet checkpoint ready to screen pose sequences (see the module docstring).

    ``device``: ``"cpu"`` (default) or any device :func:`sconet.evaluation.resolve_device` takes;
    ``max_frames``: frames used (default: the recipe's ``data.eval_max_frames``, as evaluation);
    ``threads``: render threads (0 = all cores); ``render``: how an OpenGait checkpoint's
    training maps were made (required for those: they render the subject's maps);
    ``class_order``: an OpenGait checkpoint's class order (``"2024"`` or ``"2025"``, the default).
    An OpenGait file has no recipe: width cut 10, 720 frames, logit scale 16 (OpenGait's ScoNet).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "cpu",
        max_frames: int | None = None,
        threads: int = 0,
        render: RenderSpec | None = None,
        class_order: str | None = None,
    ):
        from sconet.checkpoint import CheckpointError, read_checkpoint
        from sconet.evaluation import describe_render, load_model
        from sconet.evaluation.maps import checkpoint_maps
        from sconet.render import RENDERER_VERSION, RenderConfig
        from sconet.runtime import resolve_device
        from sconet.stream import PavNormalizer

        ckpt = read_checkpoint(checkpoint)
        self.maps = checkpoint_maps(ckpt, render)  # an OpenGait file: the user's statement
        if self.maps.render is None:
            raise CheckpointError(
                f"{ckpt.path}: the checkpoint was trained on imported maps of unknown render settings; "
                "predict cannot render like them"
            )
        try:
            self.render = RenderConfig.from_dict(self.maps.render)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{ckpt.path}: bad render settings ({exc})") from None
        self.ckpt = ckpt
        self.notes: list[str] = list(ckpt.notes)
        if ckpt.is_sconet and str(ckpt.renderer_version) not in (str(RENDERER_VERSION), "imported"):
            self.notes.append(
                f"the checkpoint was trained on maps of renderer {ckpt.renderer_version}; "
                f"this sconet renders with {RENDERER_VERSION}"
            )
        self.render_text = describe_render(self.maps.render) + (
            f" ({self.maps.source})" if not ckpt.is_sconet else ""
        )
        self.device = resolve_device(device)
        self.model = load_model(ckpt, class_order, self.device).eval()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        recipe = ckpt.recipe or {}
        data = recipe.get("data", {}) if isinstance(recipe.get("data"), Mapping) else {}
        self.cut = int(data.get("cut_pixels", 10)) if data.get("cut", True) else 0
        self.max_frames = int(max_frames or data.get("eval_max_frames", 720))
        loss = recipe.get("loss", {}) if isinstance(recipe.get("loss"), Mapping) else {}
        self.scale = float(loss.get("scale", 16.0))
        self.threads = threads
        self.pav_norm = (
            PavNormalizer.from_state_dict(ckpt.raw["pav_norm"]) if "pav_norm" in ckpt.raw else None
        )
        cfg = self.model.config
        self.needs_pav = cfg.arch == "drf" and (cfg.use_channel_gate or cfg.use_part_gate)
        self.reference, self.reference_text = self._reference()
        if self.needs_pav and self.pav_norm is None:
            raise CheckpointError(f"{ckpt.path}: a DRF checkpoint without its PAV normalisation (pav_norm)")

    def _reference(self) -> tuple[dict[str, np.ndarray] | None, str]:
        stats = self.ckpt.raw.get("pav_stats")
        if not isinstance(stats, Mapping):
            try:  # an older checkpoint: the matching cache's training ids
                from sconet.evaluation.evaluate import _split_ids
                from sconet.evaluation.maps import find_store

                store = find_store(self.ckpt, self.maps, None)
                if not store.pav_available:
                    raise ValueError(f"{store.path} holds no PAV")
                _, train_ids = _split_ids(self.ckpt, None, "train")
                idx = store.indices_of(train_ids)
                stats = pav_reference(store.pav[idx], store.labels[idx])
                self.notes.append(
                    f"PAV reference computed from the training ids in {store.path.name} "
                    "(the checkpoint stores none)"
                )
            except Exception:  # noqa: BLE001 - no reference: report the values without flags
                self.notes.append(
                    "no training PAV reference in the checkpoint and no matching cache: "
                    "asymmetries are not assessed"
                )
                return None, "no reference"
        ref = {k: torch.as_tensor(stats[k]).numpy() for k in ("levels", "healthy")}
        n = int(stats.get("n_healthy", 0))
        split = self.ckpt.split.get("name", "?")
        text = (
            f"{n} healthy training sequences of split {split}"
            if n
            else f"all {stats.get('n_all', '?')} training sequences (no healthy ones)"
        )
        return ref, text

    def _asymmetries(self, raw: np.ndarray, normalized: np.ndarray | None) -> list[Asymmetry]:
        from sconet.render import PAV_METRICS, PAV_PAIR_NAMES

        out = []
        ref = self.reference
        for i, pair in enumerate(PAV_PAIR_NAMES):
            for j, metric in enumerate(PAV_METRICS):
                v = float(raw[i, j])
                a = Asymmetry(pair, metric, v, None if normalized is None else float(normalized[i, j]))
                if ref is not None:
                    q = ref["healthy"][:, i, j].astype(np.float64)
                    levels = ref["levels"].astype(np.float64)
                    a.median = float(np.interp(0.5, levels, q))
                    a.p95 = float(np.interp(LARGE_PERCENTILE / 100, levels, q))
                    # percentile: where v falls on the (non-decreasing) quantile curve
                    lo = np.searchsorted(q, v, side="left")
                    hi = np.searchsorted(q, v, side="right")
                    if hi == 0:
                        pct = 0.0
                    elif lo >= len(q):
                        pct = 100.0
                    elif lo < hi:  # v equals a run of quantiles: the middle of the run
                        pct = 100.0 * float(levels[lo:hi].mean())
                    else:
                        k = lo - 1
                        pct = 100.0 * float(
                            levels[k] + (levels[k + 1] - levels[k]) * (v - q[k]) / (q[k + 1] - q[k])
                        )
                    a.percentile = pct
                    a.large = v > a.p95
                out.append(a)
        return out

    @torch.inference_mode()
    def screen(
        self, pose: str | Path | np.ndarray, source: str | None = None, keep_maps: bool = False
    ) -> ScreenResult:
        """Screen one pose sequence (a file path, or an array already validated by
        :func:`sconet.data.validate_pose`)."""
        from sconet.data import PoseError, load_pose_file
        from sconet.render import pav
        from sconet.render.checks import pose_problem
        from sconet.stream import width_cut

        t0 = time.perf_counter()
        if isinstance(pose, (str, Path)):
            source = str(pose)
            arr = load_pose_file(pose)
        else:
            from sconet.data import validate_pose

            arr = validate_pose(pose, source or "<array>")
        problem = pose_problem(arr, self.render)  # as the cache: refused at the door, file named
        if problem is not None:
            raise PoseError(source or "<array>", problem)
        t1 = time.perf_counter()
        try:
            used = render_first_frames(arr, self.render, self.max_frames, self.threads)
        except ValueError as exc:
            msg = str(exc)
            msg = msg[len("sequence 0: ") :] if msg.startswith("sequence 0: ") else msg
            raise ValueError(f"{source or '<array>'}: cannot render the skeleton maps ({msg})") from None
        t2 = time.perf_counter()
        raw = pav(arr)
        normalized = self.pav_norm(raw[None])[0] if self.pav_norm is not None else None
        t3 = time.perf_counter()
        x = (
            torch.from_numpy(np.ascontiguousarray(width_cut(used, self.cut)))
            .to(self.device)
            .float()
            .div_(255.0)
        )
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        pav_in = (
            torch.from_numpy(normalized[None]).to(self.device)
            if self.needs_pav and normalized is not None
            else None
        )
        out = self.model(x, [x.shape[0]], pav=pav_in)
        logits = out.logits.float().mean(-1)[0].cpu()
        probs = torch.softmax(self.scale * logits, dim=-1).numpy().astype(np.float64)
        t4 = time.perf_counter()
        return ScreenResult(
            source=str(source or "<array>"),
            checkpoint=str(self.ckpt.path),
            iteration=self.ckpt.iteration,
            frames=int(arr.shape[0]),
            frames_used=int(used.shape[0]),
            probabilities={c: float(p) for c, p in zip(CLASSES, probs, strict=True)},
            predicted=CLASSES[int(np.argmax(logits.numpy()))],
            logits=[float(v) for v in logits.numpy()],
            asymmetries=self._asymmetries(raw, normalized),
            reference=self.reference_text,
            render=self.render_text,
            timings={"read": t1 - t0, "render": t2 - t1, "pav": t3 - t2, "model": t4 - t3, "total": t4 - t0},
            notes=list(self.notes),
            maps=used if keep_maps else None,
        )


def render_first_frames(pose: np.ndarray, render: Any, max_frames: int, threads: int = 0) -> np.ndarray:
    """The skeleton maps of the first ``max_frames`` frames of ``pose`` (a :class:`RenderConfig`
    ``render``), equal to the first frames of the whole sequence's maps without rendering the rest.

    Linear imputation looks along the whole sequence (a keypoint missing in frame 89 may be
    filled from frame 95), so it runs on every frame first (cheap: keypoints only) and the kept
    frames are then rendered without it.
    """
    from sconet.render import impute, render_batch

    head = pose[:max_frames]
    if len(pose) > max_frames and render.impute == "linear":
        if ((pose[..., 0] == 0) & (pose[..., 1] == 0)).any():
            head = impute(pose)[:max_frames]
            render = dataclasses.replace(render, impute="none")
    return render_batch([head], render, threads=threads)


def screen(
    pose: str | Path, checkpoint: str | Path, *, device: str = "cpu", keep_maps: bool = False
) -> ScreenResult:
    """:class:`Screener` (checkpoint) + :meth:`Screener.screen` (pose file), in one call."""
    return Screener(checkpoint, device=device).screen(pose, keep_maps=keep_maps)


# ----------------------------------------------------------------------------------------------
# the PNG report
# ----------------------------------------------------------------------------------------------

_RED = (255, 90, 80)


def write_report(
    result: ScreenResult,
    out_png: str | Path,
    frames: int = 8,
    scale: int = 2,
    picks: Sequence[int] | None = None,
    video_tiles: Sequence[np.ndarray] = (),
) -> Path:
    """A PNG: ``frames`` evenly spaced skeleton maps (limb, joint, overlay rows), the class
    probabilities and the PAV table (large asymmetries in red); the pose source and any warning
    (in red) when the result has them. Needs ``result.maps`` (``screen(..., keep_maps=True)``).

    ``picks``: the map indices to show instead; ``video_tiles``: RGB images (``64 * scale``
    wide, one height), one per pick, shown as a "video" row above the maps."""
    from PIL import Image, ImageDraw

    from sconet._io import atomic_write_bytes
    from sconet.preview import _BG, _DIM, _FG, _GAP, _font, overlay_rgb, pick_frames

    if result.maps is None:
        raise ValueError("the result holds no skeleton maps: screen with keep_maps=True")
    maps = result.maps
    shown = np.asarray(pick_frames(maps.shape[0], frames) if picks is None else picks, np.int64)
    tile = 64 * scale
    label_w = 60
    font, small = _font(12), _font(10)
    rows = [
        ("limb", [np.repeat(maps[k, 0][..., None], 3, axis=2) for k in shown]),
        ("joint", [np.repeat(maps[k, 1][..., None], 3, axis=2) for k in shown]),
        ("overlay", [overlay_rgb(maps[k]) for k in shown]),
    ]
    width = max(label_w + len(shown) * (tile + _GAP) + _GAP, 760)
    extra = (
        [(f"pose source: {describe_pose_source(result.pose_source)}", False)] if result.pose_source else []
    )
    for w in result.warnings:  # wrapped to the sheet (about 7 px per character)
        extra += [(line, True) for line in textwrap.wrap(f"WARNING: {w}", max(60, (width - 10) // 7))]
    line_h = 15
    caption_h, index_h = 62 + line_h * len(extra), 14
    video_h = video_tiles[0].shape[0] + _GAP if len(video_tiles) else 0
    # title, metric names, one line per pair (as drawn below), and a margin
    table_h = line_h * (len({a.pair for a in result.asymmetries}) + 2) + 2 + _GAP
    height = caption_h + index_h + video_h + len(rows) * (tile + _GAP) + _GAP + table_h
    sheet = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(sheet)
    probs = "   ".join(f"{c} {100 * p:.1f}%" for c, p in result.probabilities.items())
    draw.text((_GAP + 2, 6), f"prediction: {result.predicted}    {probs}", fill=_FG, font=font)
    draw.text(
        (_GAP + 2, 24),
        f"{Path(result.source).name}: {result.frames} frames ({result.frames_used} used)   "
        f"checkpoint {Path(result.checkpoint).name} (iteration {result.iteration})",
        fill=_DIM,
        font=small,
    )
    draw.text((_GAP + 2, 40), result.render, fill=_DIM, font=small)
    for i, (text, warn) in enumerate(extra):
        draw.text(
            (_GAP + 2, 56 + i * line_h), text, fill=_RED if warn else _DIM, font=font if warn else small
        )
    y0 = caption_h + index_h
    for c, k in enumerate(shown):
        draw.text((label_w + c * (tile + _GAP) + 2, caption_h), f"t={int(k)}", fill=_DIM, font=small)
    if len(video_tiles):
        draw.text((_GAP + 2, y0 + video_tiles[0].shape[0] // 2 - 6), "video", fill=_FG, font=font)
        for c, img in enumerate(video_tiles):
            sheet.paste(Image.fromarray(np.ascontiguousarray(img)), (label_w + c * (tile + _GAP), y0))
        y0 += video_h
    for r, (name, tiles) in enumerate(rows):
        y = y0 + r * (tile + _GAP)
        draw.text((_GAP + 2, y + tile // 2 - 6), name, fill=_FG, font=font)
        for c, img in enumerate(tiles):
            im = Image.fromarray(np.ascontiguousarray(img))
            if scale != 1:
                im = im.resize((tile, tile), Image.Resampling.NEAREST)
            sheet.paste(im, (label_w + c * (tile + _GAP), y))
    y = y0 + len(rows) * (tile + _GAP) + _GAP
    draw.text(
        (_GAP + 2, y),
        "postural asymmetry: raw value [healthy training median / 95th pct] percentile (red: large)",
        fill=_FG,
        font=font,
    )
    y += line_h + 2
    metrics = list(dict.fromkeys(a.metric for a in result.asymmetries))
    col_w = (width - 90) // max(1, len(metrics))
    for j, m in enumerate(metrics):
        draw.text((90 + j * col_w, y), m.replace("_", " "), fill=_DIM, font=small)
    y += line_h
    table = {(a.pair, a.metric): a for a in result.asymmetries}
    for pair in dict.fromkeys(a.pair for a in result.asymmetries):
        draw.text((_GAP + 2, y), pair, fill=_FG, font=small)
        for j, m in enumerate(metrics):
            a = table[(pair, m)]
            text = f"{a.value:.2f}"
            if a.p95 is not None:
                text += f" [{a.median:.2f} / {a.p95:.2f}] {a.percentile:.0f}%"
            draw.text((90 + j * col_w, y), text, fill=_RED if a.large else _FG, font=small)
        y += line_h
    import io

    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    out = Path(out_png).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(out, buf.getvalue())

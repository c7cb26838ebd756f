"""Pose extraction speed beside the renderer's, and ``sconet predict video.mp4`` end to end.

Run: ``python bench/pose.py`` (needs ``pip install '.[video]'`` and Debian's ``opencv-doc`` for
``vtest.avi``; options: ``--video FILE``, ``--ckpt FILE`` (default ``runs/demo/last.pt``, else a
2-iteration checkpoint trained here on a small synthetic cache: same model size, timing only),
``--backend-option KEY=VALUE``). Prints, in one run:

1. decoding alone, BlazePose extraction on whole frames and in a region, and the Rust renderer
   on the extracted poses, in frames/s (baseline: the renderer, and real time = the video's fps);
2. ``sconet predict clip.mp4 --ckpt ... --report r.png`` as a subprocess (what a user waits for,
   Python start-up included) on a 10 s, 30 frames/s, 1280 x 720 clip made from vtest.avi (one
   person walking, each frame shown three times), against the clip's 10 s (target: faster),
   with every frame and with ``--frame-step 2``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sconet.video import ExtractConfig, extract_poses, probe_video
from sconet.video.reader import iter_frames

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
WALK = (600, 100, (150, 300, 460, 576))  # first frame, frames, region: one woman walking away


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:7.1f} frames/s ({n} frames in {seconds:.2f} s)"


def extraction(video: Path, options: dict[str, str]) -> np.ndarray:
    info = probe_video(video)
    t0 = time.perf_counter()
    n = sum(1 for _ in iter_frames(info))
    decode = time.perf_counter() - t0
    whole = extract_poses(video, ExtractConfig(options=options, min_detection_rate=0.0))
    start, count, roi = WALK
    region = extract_poses(video, ExtractConfig(options=options, roi=roi, start=start, max_frames=count))
    from sconet.render import RenderConfig, render_batch

    render_batch([whole.poses], RenderConfig())  # warm the thread pool
    t0 = time.perf_counter()
    render_batch([whole.poses], RenderConfig())
    render = time.perf_counter() - t0
    print(f"video: {video.name}, {info.width} x {info.height}, {info.fps:g} frames/s, {info.frames} frames")
    print(f"  decode only                        {_rate(n, decode)}")
    print(
        f"  blazepose, whole frames            {_rate(whole.n_frames, whole.seconds)}; "
        f"a person in {100 * whole.detection_rate:.0f} % of frames"
    )
    print(
        f"  blazepose, region {list(roi)}  {_rate(region.n_frames, region.seconds)}; "
        f"a person in {100 * region.detection_rate:.0f} % (includes skipping to frame {start})"
    )
    print(f"  renderer (baseline), body-only     {_rate(whole.n_frames, render)}")
    print(f"  real time                          {info.fps:7.1f} frames/s")
    return whole.poses


def make_clip(source: Path, out: Path, seconds: float = 10.0, fps: float = 30.0) -> Path:
    """A 1280 x 720 clip at ``fps`` of the walking woman (the region scaled to 720 px high)."""
    import cv2

    start, count, (x0, y0, x1, y1) = WALK
    cap = cv2.VideoCapture(str(source))
    frames, i = [], 0
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        if i >= start:
            frames.append(bgr[y0:y1, x0:x1])
        i += 1
    cap.release()
    h = 720
    w = int(round((x1 - x0) * h / (y1 - y0)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    n = int(seconds * fps)
    for k in range(n):
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        f = cv2.resize(
            frames[min(k * len(frames) // n, len(frames) - 1)], (w, h), interpolation=cv2.INTER_LINEAR
        )
        canvas[:, (1280 - w) // 2 : (1280 - w) // 2 + w] = f
        writer.write(canvas)
    writer.release()
    return out


def tiny_checkpoint(folder: Path) -> Path:
    """Two iterations of the demo recipe on a small synthetic cache (timing only)."""
    from sconet.cache import CacheConfig, build_cache
    from sconet.data.synth import SynthConfig, write_synthetic
    from sconet.training import apply_overrides, load_recipe, train

    poses = write_synthetic(
        folder / "synth", SynthConfig(n_sequences=30, frames=60, seed=0), ratios=("1:1:2",)
    )
    cache = build_cache(CacheConfig(poses=poses, out=folder / "store.zarr"))
    cfg = apply_overrides(
        load_recipe("demo-cpu"),
        [
            ("data", "cache", str(cache.path)),
            ("data", "split", str(Path(poses) / "Scoliosis1K_112.json")),
            ("data", "p", 4),
            ("data", "k", 2),
            ("data", "frames", 8),
            ("run", "iters", 2),
            ("run", "eval_iter", 2),
            ("run", "save_iter", 2),
            ("run", "keep_n", 0),
            ("run", "device", "cpu"),
            ("run", "out", str(folder / "run")),
            ("run", "ledger", "none"),
        ],
    )
    return train(cfg, log=lambda _m: None).last_checkpoint


def end_to_end(video: Path, ckpt: Path, folder: Path, steps: tuple[int, ...] = (1, 2)) -> None:
    clip = make_clip(video, folder / "walk10s.mp4")
    info = probe_video(clip)
    duration = info.frames / info.fps
    exe = Path(sys.executable).parent / "sconet"
    print(
        f"clip {clip.name}: {info.width} x {info.height}, {info.fps:g} frames/s, {duration:.1f} s, "
        f"{info.frames} frames"
    )
    for step in steps:
        cmd = [
            str(exe),
            "predict",
            str(clip),
            "--ckpt",
            str(ckpt),
            "--report",
            str(folder / "report.png"),
            "--json",
            "--frame-step",
            str(step),
        ]
        t0 = time.perf_counter()
        cp = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if cp.returncode != 0:
            raise SystemExit(f"sconet predict failed: {cp.stderr.strip()}")
        import json

        doc = json.loads(cp.stdout)
        s = doc["seconds"]
        print(
            f"  sconet predict --report --frame-step {step}: {wall:.1f} s wall = "
            f"{duration / wall:.2f} x real time "
            f"(target > 1); poses {s['pose']:.1f} s, render {s['render']:.2f} s, model {s['model']:.2f} s, "
            f"rest (start-up, checkpoint, report) {wall - s['total']:.1f} s; "
            f"a person in {100 * doc['pose_source']['detection_rate']:.0f} % of {doc['frames']} frames"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=VTEST)
    parser.add_argument("--ckpt", type=Path, default=Path("runs/demo/last.pt"))
    parser.add_argument("--backend-option", action="append", default=[])
    args = parser.parse_args()
    if not args.video.is_file():
        raise SystemExit(f"{args.video}: not found (apt-get install opencv-doc, or --video FILE)")
    options = dict(kv.split("=", 1) for kv in args.backend_option)
    print(f"cores: {os.cpu_count()}, load average: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    extraction(args.video, options)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt if args.ckpt.is_file() else tiny_checkpoint(Path(tmp))
        end_to_end(args.video, ckpt, Path(tmp))


if __name__ == "__main__":
    main()

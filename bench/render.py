"""Renderer benchmark: Rust frames/s (1 thread, all threads) vs OpenGait's recipe in Python.

Run: ``python bench/render.py`` (options: ``--sequences``, ``--frames``, ``--ref-frames``,
``--no-cache``, ``--baseline``). Then :func:`bench_cache` times ``sconet cache`` on the full
synthetic set.

Settings, the same poses for every engine:
- parity: full-body, sigma 8 / 8, square, per-channel, no imputation;
- default: body-only, sigma 15 / 8, square, shared, linear imputation (``RenderConfig()``);
- opengait: the ``opengait`` preset (as parity, KNN imputation).

Poses come from ``sconet.data.synth.generate_sequence`` (1 % of keypoints missing). The
reference (:mod:`sconet.render.reference`: scikit-learn, matplotlib, OpenCV, numpy) is slow, so
it renders only ``--ref-frames`` frames; frames/s are per wall-clock second of each engine, the
best of ``--repeat`` rounds in which the engines take turns (so a slow spell of a shared machine
does not favour either). Rust renders into a reused output buffer (``out=``, as ``sconet cache``
does); the "new array" column is the same call returning a fresh array each time, which adds the
kernel's page faults and zeroing of new memory (x/core is given for both). "1t cpu" is the
1-thread figure per CPU second of the rendering thread (steadier on a busy machine).

``--baseline PATH``: another build of the extension (a ``_skelmap*.so``, e.g. saved before a
change) timed in the same rounds on the same poses, 1 thread into a reused buffer: its fps and
the ratio new / baseline (wall and CPU) per setting it supports.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from sconet import _skelmap
from sconet.data.synth import SynthConfig, generate_sequence
from sconet.render import RenderConfig, get_preset, render_batch
from sconet.render import reference as ref

FULL_SET_FRAMES = 1493 * 300  # the synthetic (and real) Scoliosis1K size


def make_poses(sequences: int, frames: int) -> tuple[list[np.ndarray], str]:
    config = SynthConfig(frames=frames)
    labels = ("negative", "neutral", "positive")
    poses = [np.asarray(generate_sequence(i, labels[i % 3], config), np.float32) for i in range(sequences)]
    return poses, "sconet.data.synth.generate_sequence"


def reference_frames(poses: list[np.ndarray], frames: int) -> list[np.ndarray]:
    """The first ``frames`` frames of the batch, as sequences (what numpy renders)."""
    todo, remaining = [], frames
    for p in poses:
        if remaining <= 0:
            break
        todo.append(p[:remaining])
        remaining -= len(todo[-1])
    return todo


def timed(run: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """Wall and calling-thread CPU seconds of ``run()``, and its result."""
    t0, c0 = time.perf_counter(), time.thread_time()
    out = run()
    return time.perf_counter() - t0, time.thread_time() - c0, out


def load_baseline(path: Path) -> ModuleType:
    """Another build of ``sconet._skelmap`` from its shared-library file."""
    spec = importlib.util.spec_from_file_location("baseline._skelmap", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zarr_baseline(poses: list[np.ndarray], config: RenderConfig, out: Path) -> float:
    """The obvious way: render everything, then ``array[a:b] = frames`` through zarr-python,
    same chunks and codec as the cache. Returns seconds (render + write)."""
    import zarr
    from zarr.codecs import ZstdCodec

    from sconet.cache.format import CHUNK_FRAMES, FRAME_SHAPE, ZSTD_LEVEL

    t0 = time.perf_counter()
    total = sum(len(p) for p in poses)
    arr = zarr.create_array(
        str(out),
        shape=(total, *FRAME_SHAPE),
        dtype="uint8",
        chunks=(CHUNK_FRAMES, *FRAME_SHAPE),
        compressors=[ZstdCodec(level=ZSTD_LEVEL, checksum=True)],
        fill_value=0,
    )
    start, batch = 0, []
    for i, p in enumerate(poses):
        batch.append(p)
        if sum(len(b) for b in batch) >= 6000 or i == len(poses) - 1:
            maps = render_batch(batch, config, threads=0)
            arr[start : start + len(maps)] = maps
            start += len(maps)
            batch = []
    return time.perf_counter() - t0


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_cache(representation: str = "body-only") -> None:
    """``sconet cache`` on the full synthetic set (1,493 x 300 frames) into a fresh temporary
    store: wall and CPU time (pose loading and checks + render + compress + hash + write) and
    store size, beside a zarr-python baseline (same renders, same chunks and codec, written with
    ``arr[a:b] = ...``); then a second ``sconet cache`` reusing that store (inputs and files
    checked, no pose file and no chunk read) and a full ``verify_cache``."""
    import shutil
    import tempfile

    from sconet.cache import CacheConfig, build_cache, verify_cache
    from sconet.cache.format import _dir_size
    from sconet.data import load_sequences, scan_dataset
    from sconet.data.synth import ensure_synthetic
    from sconet.render import get_representation

    root = Path(ensure_synthetic())  # generated once under data_cache/ (not timed)
    render = RenderConfig(representation=get_representation(representation))
    tmp = Path(tempfile.mkdtemp(prefix="sconet-bench-cache-"))
    try:
        config = CacheConfig(poses=None, render=render, out=tmp / "store.zarr")
        cpu0 = _cpu_seconds()
        result = build_cache(config)
        cpu_build = _cpu_seconds() - cpu0
        reuse = build_cache(config)
        assert reuse.reused, reuse.replaced
        t0 = time.perf_counter()
        verified = verify_cache(config.out)
        t_verify = time.perf_counter() - t0
        assert verified.ok, verified.problems
        t0 = time.perf_counter()
        loaded = load_sequences(scan_dataset(root))
        t_load = time.perf_counter() - t0
        t_zarr = _zarr_baseline(list(loaded.poses), render, tmp / "baseline.zarr") + t_load
        base_size = _dir_size(tmp / "baseline.zarr")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    gib = 2**30
    print(
        f"\nsconet cache, full synthetic set ({result.n_sequences} sequences, {result.n_frames} frames, "
        f"{representation}, {os.cpu_count()} cores)"
    )
    head = f"{'writer':40} {'wall s':>7} {'cpu s':>7} {'frames/s':>9} {'store GiB':>10}"
    print(head)
    print("-" * len(head))
    print(
        f"{'sconet build_cache (direct chunk writes)':40} {result.seconds:7.1f} {cpu_build:7.1f} "
        f"{result.n_frames / result.seconds:9.0f} {result.bytes_on_disk / gib:10.2f}"
    )
    print(
        f"{'baseline: render + zarr arr[a:b] = maps':40} {t_zarr:7.1f} {'':>7} "
        f"{result.n_frames / t_zarr:9.0f} {base_size / gib:10.2f}"
    )
    print(f"{'sconet build_cache again (store reused)':40} {reuse.seconds:7.2f}")
    print(f"{'verify_cache (every chunk decoded, hashed)':40} {t_verify:7.2f}")
    print(
        "(targets: whole synthetic set cached in < 30 s on 2 cores, both including loading the "
        "pickles; a reuse under 1 s)"
    )


def _engines(
    poses: list[np.ndarray], config: RenderConfig, todo: list[np.ndarray], baseline: ModuleType | None
) -> dict[str, Callable[[], np.ndarray]]:
    """The timed engines: the reference (on ``todo``), Rust 1 thread (reused / new output), all
    threads, and the baseline build 1 thread (when given and it knows the settings)."""
    buf = np.empty((sum(len(p) for p in poses), 2, 64, 64), np.uint8)
    engines = {
        "ref": lambda: np.concatenate([ref.render_with_config(p, config) for p in todo]),
        "rust1": lambda: render_batch(poses, config, threads=1, out=buf),
        "rust1new": lambda: render_batch(poses, config, threads=1),
        "rustn": lambda: render_batch(poses, config, threads=0, out=buf),
    }
    if baseline is not None and config.impute != "knn" and config.head == "keep":
        rep, old = config.representation, np.empty_like(buf)
        args = (rep.joint_mask(), rep.limb_array(), config.sigma_limb, config.sigma_joint)
        args += (config.geometry, config.alignment, config.impute)
        engines["base1"] = lambda: baseline.render_batch(poses, *args, 1, old)
    return engines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=40, help="sequences rendered by Rust")
    ap.add_argument("--frames", type=int, default=300, help="frames per sequence")
    ap.add_argument("--ref-frames", type=int, default=300, help="frames rendered by the reference")
    ap.add_argument("--repeat", type=int, default=5, help="timing rounds, engines interleaved (best kept)")
    ap.add_argument("--no-cache", action="store_true", help="skip the full-set cache build timing")
    ap.add_argument("--baseline", type=Path, help="another _skelmap build to time beside this one")
    args = ap.parse_args(argv)

    baseline = load_baseline(args.baseline) if args.baseline else None
    cores = os.cpu_count() or 1
    poses, source = make_poses(args.sequences, args.frames)
    n = sum(len(p) for p in poses)
    print(
        f"sconet renderer {_skelmap.RENDERER_VERSION} ({_skelmap.simd_level()}), {cores} cores, "
        f"poses: {source}; Rust {n} frames, reference {args.ref_frames} frames"
        + (f"; baseline {args.baseline} (renderer {baseline.RENDERER_VERSION})" if baseline else "")
    )
    settings = [
        ("parity  full-body s8/8 per-channel", RenderConfig.reference()),
        ("default body-only s15/8 shared", RenderConfig()),
        ("opengait preset (knn)", get_preset("opengait")),
    ]
    head = (
        f"{'settings':36} {'ref fps':>8} {'rust 1t fps':>12} {'1t cpu':>7} {'1t new array':>12} "
        f"{f'rust {cores}t fps':>12} {'x/core':>7} {'(new arr)':>9} {'max diff':>8}"
    )
    print(head)
    print("-" * len(head))
    compared = []
    for label, config in settings:
        engines = _engines(poses, config, reference_frames(poses, args.ref_frames), baseline)
        engines["rust1"]()  # warm-up (tables, pages)
        # Rounds interleave the engines so a slow spell of a shared machine hits all of them;
        # each keeps its best round.
        best = dict.fromkeys(engines, float("inf"))
        cpu = dict.fromkeys(engines, float("inf"))
        outputs = {}
        for _ in range(args.repeat):
            for name, run in engines.items():
                dt, ct, outputs[name] = timed(run)
                best[name], cpu[name] = min(best[name], dt), min(cpu[name], ct)
        ref_maps = outputs["ref"]
        ref_fps = len(ref_maps) / best["ref"]
        fps1, fps1new, fpsn = n / best["rust1"], n / best["rust1new"], n / best["rustn"]
        assert np.array_equal(outputs["rust1new"], outputs["rustn"]), (
            "rendering into a buffer changed the maps"
        )
        diff = int(np.abs(outputs["rust1new"][: len(ref_maps)].astype(np.int16) - ref_maps).max())
        print(
            f"{label:36} {ref_fps:8.0f} {fps1:12.0f} {n / cpu['rust1']:7.0f} {fps1new:12.0f} "
            f"{fpsn:12.0f} {fps1 / ref_fps:7.0f} {fps1new / ref_fps:9.0f} {diff:8d}"
        )
        if "base1" in engines:
            compared.append((label, n / best["base1"], fps1, n / cpu["base1"], n / cpu["rust1"]))
        if config == RenderConfig():
            print(
                f"  full set ({FULL_SET_FRAMES} frames) at these settings: "
                f"~{FULL_SET_FRAMES / fpsn:.1f} s on {cores} threads, "
                f"~{FULL_SET_FRAMES / fps1:.1f} s on 1 thread, "
                f"~{FULL_SET_FRAMES / ref_fps / 3600:.2f} h reference"
            )
    print(
        "(max diff: Rust vs OpenGait's recipe (sconet.render.reference) on the same frames, grey"
        " levels; both impute alike: the same linear rule, scikit-learn's KNNImputer)"
    )
    if compared:
        print(f"\nthis build vs baseline, 1 thread, reused buffer, same rounds ({args.repeat})")
        head = f"{'settings':36} {'baseline fps':>12} {'this fps':>9} {'ratio':>6} {'cpu ratio':>9}"
        print(head)
        print("-" * len(head))
        for label, base, this, base_cpu, this_cpu in compared:
            print(f"{label:36} {base:12.0f} {this:9.0f} {this / base:6.3f} {this_cpu / base_cpu:9.3f}")
    if not args.no_cache:
        bench_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())

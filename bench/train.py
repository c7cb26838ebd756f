"""Training throughput benchmark: loader vs model, sconet's step vs an OpenGait-style step, DRF overhead.

Run: ``python bench/train.py`` (options: ``--device``, ``--iters``, ``--warmup``, ``--width``,
``--quick``). Three tables, all in one process on the device present:

(a) loader: P x K clips per second produced by :class:`sconet.stream.TripletBatches` over a
    RAM :class:`sconet.stream.FrameBank` (no model), beside what the model consumes
    (training it/s x P x K). The loader should outrun the model by at least 10x.
(b) training it/s of the standard configuration (P x K 8 x 8, 30 frames, 64 -> 44 width cut,
    full-width ScoNet-MT-ske) with sconet's step (uint8 clips to the device, float there,
    packed ``[sum T, C, H, W]`` input, bf16 autocast on CUDA) vs an OpenGait-style step (float32
    clips built on the host, ``[N, C, T, H, W]`` input, fp16 autocast + GradScaler on CUDA).
    On CPU both run in fp32: CPU fp16 autocast is not a meaningful baseline.
(c) DRF (ScoNet-MT-ske + PAV-guided attention, both gates) vs ScoNet-MT-ske per iteration,
    with sconet's step.

Data: the built-in synthetic Scoliosis1K cache (found, or built once, via
:func:`sconet.training.prepare_data`), training ids of its 1:1:2 split. ``--quick`` instead
renders a small synthetic set into a temporary store (removed afterwards) and uses a
width-1/16 model.

A full-width step is about 14 TFLOP (minutes per iteration on a 2-core CPU), so on CPU the
default width is 1/16, as in the ``demo-cpu`` recipe (said in the output); ``--width 1.0``
forces the full model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sconet.models import ModelConfig, ScoNetLoss, ScoNetMT, count_parameters
from sconet.runtime import autocast, resolve_device
from sconet.stream import FrameBank, PavNormalizer, TripletBatches, to_device, tune_malloc
from sconet.training import TrainConfig

P, K, FRAMES, CUT = 8, 8, 30, 10


@dataclass
class Timing:
    name: str
    it_per_s: float
    ms_per_it: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def quick_store(tmp: Path) -> tuple[Path, list[str]]:
    """A small synthetic store (48 sequences x 90 frames) under ``tmp``; its training ids."""
    from sconet.cache import CacheConfig, build_cache
    from sconet.data import load_split
    from sconet.data.synth import SynthConfig, write_synthetic
    from sconet.render import RenderConfig

    root = Path(
        write_synthetic(tmp / "poses", SynthConfig(n_sequences=48, frames=90, seed=0), ratios=("1:1:2",))
    )
    result = build_cache(CacheConfig(poses=root, render=RenderConfig(), out=tmp / "quick.zarr"))
    split = load_split(root / "Scoliosis1K_112.json")
    return result.path, [str(i) for i in split.train_ids]


def open_bank(quick: bool, tmp: Path) -> tuple[FrameBank, str]:
    from sconet.cache import open_cache

    if quick:
        path, train_ids = quick_store(tmp)
        store = open_cache(path)
        idx = store.indices_of(train_ids)
        what = f"temporary synthetic store ({store.n_sequences} sequences)"
    else:
        from sconet.training import prepare_data

        data = prepare_data(TrainConfig(), log=lambda m: print(m, file=sys.stderr, flush=True))
        store, idx = data.store, data.train
        what = f"{store.path.name}"
    t0 = time.perf_counter()
    bank = FrameBank(store, idx, cut_pixels=CUT, max_ram_bytes=None)
    print(
        f"data: {what}: {len(bank)} training sequences, {int(bank.offsets[-1]):,} frames in RAM "
        f"({bank.nbytes / 2**20:.0f} MiB uint8, loaded in {time.perf_counter() - t0:.1f} s)"
    )
    return bank, what


# ----------------------------------------------------------------------------------------------
# (a) the loader alone
# ----------------------------------------------------------------------------------------------


def bench_loader(bank: FrameBank, seconds: float = 3.0, drf: bool = False) -> float:
    """Batches per second of ``TripletBatches.batch`` (P x K x FRAMES uint8 clips), best of 3 rounds."""
    norm = PavNormalizer.fit(bank.pav) if drf else None
    stream = TripletBatches(bank, P, K, FRAMES, seed=0, pav_normalizer=norm)
    it = iter(stream)
    for _ in range(3):
        next(it)
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            next(it)
            n += 1
        best = max(best, n / (time.perf_counter() - t0))
    return best


# ----------------------------------------------------------------------------------------------
# (b), (c) training steps
# ----------------------------------------------------------------------------------------------


def _make(
    width: float, arch: str, device: torch.device
) -> tuple[ScoNetMT, torch.optim.Optimizer, ScoNetLoss]:
    model = ScoNetMT(ModelConfig(width=width, arch=arch), seed=0).to(device).train()
    cfg = TrainConfig()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    return model, opt, ScoNetLoss().to(device)


def sconet_step(width: float, arch: str, device: torch.device, bank: FrameBank) -> Callable[[int], None]:
    """sconet's trainer step (as :mod:`sconet.training`): uint8 to the device, packed input, bf16 on CUDA."""
    model, opt, loss_fn = _make(width, arch, device)
    norm = PavNormalizer.fit(bank.pav) if arch == "drf" else None
    stream = TripletBatches(bank, P, K, FRAMES, seed=0, pav_normalizer=norm)
    amp = device.type == "cuda"

    def step(s: int) -> None:
        batch = stream.batch(s)
        x, lengths = to_device(batch, device)
        labels = batch.labels.to(device, non_blocking=True)
        seq_ids = batch.seq_ids.to(device, non_blocking=True)
        pav = batch.pav.to(device) if batch.pav.numel() else None
        with autocast(device, amp):
            out = model(x, lengths.tolist(), pav=pav)
        loss, _ = loss_fn(out.embeddings, out.logits, seq_ids, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def opengait_step(width: float, device: torch.device, bank: FrameBank) -> Callable[[int], None]:
    """OpenGait-style step: float32 clips built on the host (``/ 255`` there, as its transforms
    do), ``[N, C, T, H, W]`` input; fp16 autocast + GradScaler on CUDA, fp32 on CPU."""
    model, opt, loss_fn = _make(width, "sconet", device)
    stream = TripletBatches(bank, P, K, FRAMES, seed=0)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)

    def step(s: int) -> None:
        batch = stream.batch(s)
        n = len(batch.seq_lengths)
        seqs = batch.frames.float().div_(255.0).view(n, FRAMES, *batch.frames.shape[1:]).transpose(1, 2)
        if cuda:
            seqs = seqs.contiguous().pin_memory()
        x = seqs.to(device, non_blocking=True)
        labels = batch.labels.to(device)
        seq_ids = batch.seq_ids.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=cuda):
            out = model(x)
            loss, _ = loss_fn(out.embeddings.float(), out.logits.float(), seq_ids, labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def time_interleaved(
    steps: dict[str, Callable[[int], None]], device: torch.device, warmup: int, iters: int
) -> dict[str, Timing]:
    """Best (minimum) seconds per step of each kind, the kinds interleaved step by step in a
    rotating order (A, B, C, B, C, A, C, A, B, ...) so that load from other processes and
    position effects hit them alike; the minimum is the least disturbed step (a shared CPU adds
    noise, never speed)."""
    for s in range(warmup):
        for step in steps.values():
            step(s)
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r, s in enumerate(range(warmup, warmup + iters)):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no kind always first
            step = steps[name]
            t0 = time.perf_counter()
            step(s)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        dt = float(np.min(ts))
        out[name] = Timing(name, 1.0 / dt, 1000.0 * dt)
    return out


def forward_flops(width: float, arch: str) -> int:
    """Forward FLOPs (convolutions and matmuls, as counted by ``torch.utils.flop_counter``) of one
    training sample: a 30-frame ``2 x 64 x 44`` clip (and its PAV for DRF)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = ScoNetMT(ModelConfig(width=width, arch=arch), seed=0).eval()
    x = torch.zeros(FRAMES, 2, 64, 64 - 2 * CUT)
    pav = torch.rand(1, 8, 3) if arch == "drf" else None
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, [FRAMES], pav=pav)
    return int(counter.get_total_flops())


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument(
        "--iters",
        type=int,
        default=None,
        help="timed iterations per step kind (default 20 on CUDA, 3 on CPU)",
    )
    ap.add_argument(
        "--warmup", type=int, default=None, help="untimed iterations first (default 5 on CUDA, 1 on CPU)"
    )
    ap.add_argument(
        "--width",
        type=float,
        default=None,
        help="model width (default 1.0 on CUDA, 0.0625 on CPU or with --quick)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="small temporary synthetic store, width 1/16, few iterations"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if not cuda:
        tune_malloc()
    if cuda:
        torch.backends.cudnn.benchmark = True
    width = args.width if args.width is not None else (1.0 if cuda and not args.quick else 0.0625)
    iters = args.iters if args.iters is not None else (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if args.quick and args.iters is None:
        iters, warmup = (10, 3) if cuda else (3, 1)

    name = (
        torch.cuda.get_device_name(device)
        if cuda
        else f"CPU, {torch.get_num_threads()} threads ({os.cpu_count()} cores)"
    )
    print(f"sconet training benchmark on {device} ({name}), torch {torch.__version__}")
    print(
        f"standard configuration: P x K = {P} x {K}, {FRAMES} frames per clip, 64 -> 44 width cut, "
        f"model width {width:g} ({count_parameters(ScoNetMT(ModelConfig(width=width))):,} parameters); "
        f"{warmup} warm-up + {iters} timed iterations per row (best step; rows interleaved)"
    )
    if width != 1.0:
        print(
            f"note: width {width:g}, not the paper's 1.0 (a full-width step is ~14 TFLOP; pass --width 1.0)"
        )

    tmp = Path(tempfile.mkdtemp(prefix="sconet-bench-train-"))
    try:
        bank, _ = open_bank(args.quick, tmp)
        if len(bank) < P:
            print(f"error: only {len(bank)} training sequences (< P = {P})", file=sys.stderr)
            return 2
        loader_bps = bench_loader(bank)

        timed = time_interleaved(
            {
                "sconet step (ScoNet-MT-ske)": sconet_step(width, "sconet", device, bank),
                "OpenGait-style step (ScoNet-MT-ske)": opengait_step(width, device, bank),
                "sconet step, DRF (PGA both gates)": sconet_step(width, "drf", device, bank),
            },
            device,
            warmup,
            iters,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ours, base, drf = timed.values()
    clips = P * K
    print(f"\n(a) loader vs model (clips of {FRAMES} frames per second)")
    head = f"{'':50} {'clips/s':>10} {'batches/s':>10}"
    print(head + "\n" + "-" * len(head))
    print(
        f"{'loader alone (TripletBatches over RAM FrameBank)':50} {loader_bps * clips:10.0f} "
        f"{loader_bps:10.1f}"
    )
    print(
        f"{'model consumption (sconet step it/s x P x K)':50} {ours.it_per_s * clips:10.1f} "
        f"{ours.it_per_s:10.3f}"
    )
    ratio = loader_bps / ours.it_per_s
    print(f"loader / model = {ratio:.0f}x (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")

    precision = "bf16 autocast" if cuda else "fp32"
    base_precision = "fp16 autocast + GradScaler" if cuda else "fp32 (CPU fp16 autocast is not meaningful)"
    print(f"\n(b) training step, standard configuration, width {width:g}")
    head = f"{'step':44} {'it/s':>8} {'ms/it':>9}  precision"
    print(head + "\n" + "-" * (len(head) + 34))
    print(f"{ours.name:44} {ours.it_per_s:8.3f} {ours.ms_per_it:9.1f}  {precision}")
    print(f"{base.name:44} {base.it_per_s:8.3f} {base.ms_per_it:9.1f}  {base_precision}")
    print(f"sconet / OpenGait-style = {ours.it_per_s / base.it_per_s:.2f}x")

    pga = count_parameters(ScoNetMT(ModelConfig(width=width, arch="drf")).PGA)
    print(f"\n(c) DRF overhead per iteration (PGA: {pga:,} parameters), sconet step")
    head = f"{'model':44} {'it/s':>8} {'ms/it':>9}"
    print(head + "\n" + "-" * len(head))
    print(f"{'ScoNet-MT-ske':44} {ours.it_per_s:8.3f} {ours.ms_per_it:9.1f}")
    print(f"{'DRF (ScoNet-MT-ske + PGA)':44} {drf.it_per_s:8.3f} {drf.ms_per_it:9.1f}")
    extra = drf.ms_per_it - ours.ms_per_it
    print(f"DRF overhead: {extra:+.1f} ms/it ({100 * extra / ours.ms_per_it:+.1f}%; timing noise included)")
    f_sc, f_drf = forward_flops(width, "sconet"), forward_flops(width, "drf")
    print(
        f"arithmetic (forward, per {FRAMES}-frame sample): ScoNet-MT-ske {f_sc / 1e9:.3f} GFLOP, DRF "
        f"{f_drf / 1e9:.3f} GFLOP: PGA adds {f_drf - f_sc:,} FLOP ({100 * (f_drf - f_sc) / f_sc:.4f}%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

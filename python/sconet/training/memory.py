"""How much memory a run will need, checked before it starts (``run.memory_check``).

The estimate adds what grows with the settings, on top of what the process already holds:

- **training step**: the activations kept for the backward pass, ``P / world_size x K x frames``
  frames per batch times 0.62 x the float32 size of every layer output for one frame of the
  cache's (width-cut) shape, read off one forward pass of the model itself (so any width,
  architecture or input shape is covered), plus 300 KiB of work buffers per frame and 256 MiB
  once. The constants fit the peak memory measured on CPU (docs/runs-and-faults.md); or
- **evaluation**, when larger (the two take turns): ``eval_batch`` sequences of up to
  ``eval_max_frames`` frames in inference mode, two layer outputs alive at a time;
- **model and optimiser**: parameters x 4 (weights, gradients, two optimiser moments);
- **frame banks**: the uint8 training and evaluation frames held in RAM (within ``max_ram_gb``);
- **workers**: a few hundred MB per DataLoader worker process.

On a CUDA device the activations, evaluation and model live in GPU memory (compared with
``torch.cuda.mem_get_info``; bf16 autocast halves the activations) and the banks in RAM. RAM
available is the smallest of ``MemAvailable`` (``/proc/meminfo``), the cgroup's limit minus its
usage, and ``$SCONET_MEMORY_LIMIT`` (e.g. ``8G``: what this run may use on a shared machine).

The estimate aims a little low, so a refusal means the run clearly would not fit; the refusal
names the way out (a narrower model, a smaller batch, a GPU) with the estimate each would give.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sconet.models import ModelConfig, ScoNetMT
from sconet.training.config import TrainConfig, TrainError

__all__ = [
    "LIMIT_ENV",
    "MemoryEstimate",
    "InsufficientMemory",
    "available_ram",
    "check_memory",
    "estimate_memory",
    "layer_bytes_per_frame",
    "parse_size",
]

LIMIT_ENV = "SCONET_MEMORY_LIMIT"
ACTIVATION_SHARE = 0.62
PER_FRAME_WORK = 300 * 2**10
WORKSPACE = 256 * 2**20
WORKER_BYTES = 300 * 2**20
SUGGESTION_SHARE = 0.8  # a suggested way out leaves a fifth of the memory free
GiB = 2**30


class InsufficientMemory(TrainError):
    """The run would clearly not fit in the memory available (the message says what would)."""


def parse_size(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"1000000"`` -> bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not m:
        raise TrainError(f"${LIMIT_ENV}={text!r}: expected a size such as 8G, 512M or a number of bytes")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2)]
    return int(float(m.group(1)) * scale)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """The cgroup's memory limit minus its usage (v2 or v1), or ``None`` when unlimited or unknown."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        v2 = controllers == ""
        if not v2 and "memory" not in controllers.split(","):
            continue
        base = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/memory")
        limit_name, usage_name = ("memory.max", "memory.current") if v2 else (
            "memory.limit_in_bytes", "memory.usage_in_bytes")  # fmt: skip
        for folder in (base / rel.lstrip("/"), base):
            limit, usage = _read_int(folder / limit_name), _read_int(folder / usage_name)
            if limit is not None and usage is not None and limit < 2**60:
                rooms.append(max(0, limit - usage))
                break
    return min(rooms) if rooms else None


def available_ram() -> tuple[int | None, str]:
    """RAM this run may still take and where that figure comes from (``None``: unknown)."""
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except (OSError, ValueError, IndexError):
        pass
    room = _cgroup_room()
    if room is not None:
        found.append((room, "the cgroup memory limit"))
    limit = os.environ.get(LIMIT_ENV, "").strip()
    if limit:
        found.append((parse_size(limit), f"${LIMIT_ENV}"))
    if not found:
        return None, "unknown"
    return min(found)


def layer_bytes_per_frame(config: ModelConfig, frame_shape: Sequence[int]) -> tuple[int, int]:
    """``(sum, max)`` of the float32 bytes of every layer output for one frame of ``frame_shape``
    ``(C, H, W)``, from a forward pass of a freshly built model on two frames."""
    return _model_sizes(config, tuple(int(v) for v in frame_shape))[:2]


@functools.lru_cache(maxsize=32)
def _model_sizes(config: ModelConfig, frame_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(layer bytes per frame, widest layer bytes per frame, parameters)``."""
    model = ScoNetMT(config, seed=0).eval()
    sizes: list[int] = []

    def hook(_module: torch.nn.Module, _inp: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    frames = 2
    try:
        with torch.inference_mode():
            pav = torch.zeros(1, config.pav_pairs, config.pav_metrics) if config.arch == "drf" else None
            model(torch.zeros(frames, *frame_shape), [frames], pav=pav)
    finally:
        for h in handles:
            h.remove()
    n_params = sum(p.numel() for p in model.parameters())
    return 4 * sum(sizes) // frames, 4 * max(sizes, default=0) // frames, n_params


@dataclass
class MemoryEstimate:
    """Bytes a run is expected to add, per part, against what is available."""

    parts: dict[str, int]
    ram_parts: tuple[str, ...]
    available: int | None
    source: str
    device: str
    gpu_available: int | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def ram(self) -> int:
        return sum(v for k, v in self.parts.items() if k in self.ram_parts)

    @property
    def gpu(self) -> int:
        return sum(v for k, v in self.parts.items() if k not in self.ram_parts)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def fits(self, share: float = 1.0) -> bool:
        """Whether the run fits in ``share`` of the memory available."""
        if self.device == "cuda":
            gpu_ok = self.gpu_available is None or self.gpu <= share * self.gpu_available
            return gpu_ok and (self.available is None or self.ram <= share * self.available)
        return self.available is None or self.total <= share * self.available

    def describe(self) -> str:
        return "; ".join(f"{k} {_gib(v)}{self.notes.get(k, '')}" for k, v in self.parts.items() if v)


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= 0.1 * GiB else f"{n / 2**20:.0f} MiB"


def _bank_bytes(lengths: np.ndarray, frame_bytes: int, cap: int | None) -> int:
    if cap is not None:
        lengths = np.minimum(lengths, cap)
    return int(lengths.sum()) * frame_bytes


def estimate_memory(
    config: TrainConfig,
    offsets: np.ndarray,
    sets: dict[str, np.ndarray],
    frame_shape: Sequence[int],
    device: str = "cpu",
    world_size: int = 1,
) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of a run (see the module docstring).

    ``offsets``: the store's sequence offsets; ``sets``: store indices of ``train`` and the
    evaluated sets; ``frame_shape``: ``(C, H, W)`` of a stored frame (before the width cut).
    """
    d, r, m = config.data, config.run, config.model
    c, h, w = (int(v) for v in frame_shape)
    cut = d.cut_pixels if d.cut else 0
    shape = (c, h, w - 2 * cut)
    frame_u8 = int(np.prod(shape))
    per_frame, widest, n_params = _model_sizes(m, shape)
    batch = max(1, d.p // max(1, world_size)) * d.k * d.frames
    amp = 0.5 if device == "cuda" and r.amp else 1.0
    lengths = np.diff(np.asarray(offsets, dtype=np.int64))
    eval_sets = [k for k in sets if k != "train" and len(sets[k])]
    longest = max((int(min(lengths[sets[k]].max(), d.eval_max_frames)) for k in eval_sets), default=0)
    budget = int(d.max_ram_gb * GiB)
    banks = 0
    for name in ("train", *eval_sets):
        nbytes = _bank_bytes(lengths[sets[name]], frame_u8, None if name == "train" else d.eval_max_frames)
        if nbytes <= budget:
            banks += nbytes
            budget -= nbytes
    train_step = int(batch * (ACTIVATION_SHARE * per_frame * amp + PER_FRAME_WORK + 4 * frame_u8))
    evaluation = int(d.eval_batch * longest * (2 * widest * amp + 4 * frame_u8))
    # training steps and evaluations take turns: the larger of the two counts
    if train_step >= evaluation:
        ranks = f" / {world_size} ranks" if world_size > 1 else ""
        name, need = "training step", train_step
        note = f"{batch} frames per batch = P {d.p}{ranks} x K {d.k} x {d.frames} frames"
    else:
        name, need = "evaluation", evaluation
        note = f"{d.eval_batch} sequences x {longest} frames"
    parts = {
        name: need + WORKSPACE,
        "model and optimiser": 16 * n_params,
        "frame banks": banks,
        "workers": d.num_workers * WORKER_BYTES,
    }
    notes = {name: f" ({note}, model width {m.width:g})"}
    available, source = available_ram()
    if device == "cuda":  # activations, evaluation and the model on the GPU; banks and workers in RAM
        gpu_free = int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else None
        return MemoryEstimate(parts, ("frame banks", "workers"), available, source, device, gpu_free, notes)
    return MemoryEstimate(parts, tuple(parts), available, source, device, None, notes)


def _with(config: TrainConfig, section: str, **changes: object) -> TrainConfig:
    new = dataclasses.replace(config)
    setattr(new, section, dataclasses.replace(getattr(config, section), **changes))
    return new


def check_memory(
    config: TrainConfig,
    offsets: np.ndarray,
    sets: dict[str, np.ndarray],
    frame_shape: Sequence[int],
    device: str = "cpu",
    world_size: int = 1,
) -> MemoryEstimate:
    """:func:`estimate_memory`; raises :class:`InsufficientMemory` (with the way out) when the run
    clearly will not fit."""
    est = estimate_memory(config, offsets, sets, frame_shape, device, world_size)
    if est.fits():
        return est
    where = (
        f"{_gib(est.gpu)} of GPU memory with {_gib(est.gpu_available or 0)} free"
        if device == "cuda" and est.gpu_available is not None and est.gpu > est.gpu_available
        else f"{_gib(est.ram if device == 'cuda' else est.total)} of memory with {_gib(est.available or 0)} "
        f"available ({est.source})"
    )
    ways = []
    for width in (0.5, 0.25, 0.125, 0.0625, 0.03125):
        if width < config.model.width:
            alt = estimate_memory(_with_model(config, width), offsets, sets, frame_shape, device, world_size)
            if alt.fits(SUGGESTION_SHARE):
                ways.append(f"--set model.width={width:g} (about {_gib(alt.total)})")
                break
    k = _largest(config.data.k - 1, lambda k: _with(config, "data", k=k), offsets, sets, frame_shape, device,
                 world_size)  # fmt: skip
    if k is not None:
        alt = estimate_memory(_with(config, "data", k=k), offsets, sets, frame_shape, device, world_size)
        ways.append(f"a smaller batch, e.g. --set data.k={k} (about {_gib(alt.total)})")
    else:
        ways.append("a smaller batch (--set data.p=... data.k=... data.frames=...)")
    if device != "cuda":
        ways.append("--device cuda on a machine with a GPU")
    ways.append("or --no-memory-check to try anyway")
    raise InsufficientMemory(
        f"this run needs about {where}, so it would be killed for lack of memory "
        f"({est.describe()}); ways out: {', '.join(ways)}"
    )


def _largest(
    top: int,
    variant: Callable[[int], TrainConfig],
    offsets: np.ndarray,
    sets: dict[str, np.ndarray],
    frame_shape: Sequence[int],
    device: str,
    world_size: int,
) -> int | None:
    """The largest ``n`` in ``1..top`` whose ``variant(n)`` fits (the need grows with ``n``)."""

    def fits(n: int) -> bool:
        return estimate_memory(variant(n), offsets, sets, frame_shape, device, world_size).fits(
            SUGGESTION_SHARE
        )

    if top < 1 or not fits(1):
        return None
    lo, hi = 1, top  # fits(lo) holds
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _with_model(config: TrainConfig, width: float) -> TrainConfig:
    return _with(config, "model", width=width)

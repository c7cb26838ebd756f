"""Training and evaluation batches from a cache store.

Design
------
* :class:`FrameBank` holds the frames of a chosen set of sequences as ``uint8`` in RAM, already
  width-cut (``[sum T, 2, 64, 44]``: 10 columns dropped each side by default), read once with
  :meth:`sconet.cache.CacheStore.load_frames` in groups of whole sequences. When they would
  take more than ``max_ram_bytes`` the bank keeps only the store path and reads the sequences a
  batch needs from Zarr (one chunk per sequence) instead ("streaming").
* :class:`TripletBatches` is an :class:`~torch.utils.data.IterableDataset` that yields whole
  P x K batches (use it with ``DataLoader(batch_size=None)`` or iterate it directly). Batch
  ``s`` is a pure function of ``(seed, s, rank)``:

  - ids: epoch ``e = s // B`` (``B = n_ids // P`` batches per epoch, the remainder dropped) uses
    the permutation ``default_rng([seed, ID_STREAM, e]).permutation(n_ids)``; batch ``s`` takes
    its ``P`` entries ``b*P:(b+1)*P``, so the P ids are distinct and every id comes once per
    epoch. The permutation is the same on every rank (shared seed); rank ``r`` of ``W`` takes
    the ``r``-th ``P / W`` of them.
  - frames: ``default_rng([seed, FRAME_STREAM, s, rank])`` draws, for each of the rank's ids,
    ``K`` samples of ``frames`` frame indices: without replacement when the sequence has at least
    ``frames`` frames, with replacement otherwise; the drawn order is kept as is (random).
  - the clips are gathered with one ``np.take`` into one freshly allocated ``uint8`` batch
    ``[n * frames, C, H, W]`` and handed over with ``torch.from_numpy`` (no copy). Convert on
    the device with :func:`to_device` (``float() / 255``).

  Resuming at iteration ``s`` therefore only needs ``start_step = s`` (the sampler state saved in
  checkpoints is ``{"seed", "next_step"}``); worker ``w`` of ``W`` produces steps
  ``start + w, start + w + W, ...`` and the DataLoader returns them in step order, so any number
  of workers yields the same stream as ``num_workers=0``.
* Worker safety: the bank pickles without its Zarr handle (re-opened lazily in each worker
  process) and, when ``shared=True``, keeps its frames in a shared-memory torch tensor so that
  ``spawn``/``forkserver`` workers map it instead of copying it. :func:`worker_context` picks
  ``forkserver`` when the process already runs threads (Zarr's I/O loop, the renderer), since
  forking a threaded process can deadlock.
* Evaluation: :func:`eval_batches` yields whole sequences in store order, the first
  ``max_frames`` frames of each (natural order), ``batch_size`` sequences per batch packed as
  ``[sum T, C, H, W]`` with their lengths.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from sconet.cache import CacheStore, open_cache
from sconet.classes import CLASSES
from sconet.render import FRAME_SHAPE

__all__ = [
    "FRAME_SHAPE",
    "Batch",
    "FrameBank",
    "PavNormalizer",
    "pav_reference",
    "TripletBatches",
    "eval_batches",
    "to_device",
    "width_cut",
    "worker_context",
    "make_loader",
    "tune_malloc",
]

ID_STREAM = 0x1D5
FRAME_STREAM = 0xF4A
_LOAD_GROUP = 64  # sequences per load_frames call when filling a bank


class Batch(NamedTuple):
    """One batch, sequences packed along the first axis.

    - ``frames``: uint8 ``[sum T, C, H, W]`` (sequence ``i`` is the ``i``-th run of
      ``seq_lengths[i]`` rows);
    - ``seq_lengths``: int64 ``[N]``;
    - ``labels``: int64 ``[N]`` class index (:data:`sconet.classes.CLASSES` order);
    - ``seq_ids``: int64 ``[N]`` store index of each sequence (the triplet labels);
    - ``pav``: float32 ``[N, 8, 3]`` normalised postural asymmetry vectors, or an empty tensor
      when no normaliser was given.
    """

    frames: torch.Tensor
    seq_lengths: torch.Tensor
    labels: torch.Tensor
    seq_ids: torch.Tensor
    pav: torch.Tensor


def width_cut(frames: np.ndarray, pixels: int = 10) -> np.ndarray:
    """Drop ``pixels`` columns on each side of the last axis (a view): 64 -> 44 by default."""
    if pixels <= 0:
        return frames
    w = frames.shape[-1]
    if 2 * pixels >= w:
        raise ValueError(f"cannot cut {pixels} columns from each side of width {w}")
    return frames[..., pixels : w - pixels]


def to_device(
    batch: Batch, device: torch.device | str, non_blocking: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(float frames in [0, 1] on device, seq_lengths)``: uint8 is moved first, then converted."""
    x = batch.frames.to(device, non_blocking=non_blocking).float().div_(255.0)
    return x, batch.seq_lengths


_PAV_LEVELS = np.linspace(0.0, 1.0, 21, dtype=np.float32)


def pav_reference(pav: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Quantiles (0, 5, ..., 100 %) of raw training PAVs ``[N, 8, 3]``: of the healthy (negative)
    sequences and of all of them. Tensors and ints only (safe to store in a checkpoint)."""
    pav = np.asarray(pav, dtype=np.float32).reshape(-1, 8, 3)
    labels = np.asarray(labels).reshape(-1)
    healthy = pav[labels == CLASSES.index("negative")]
    ref = healthy if len(healthy) else pav

    def q(x: np.ndarray) -> torch.Tensor:
        if len(x) == 0:
            return torch.zeros(len(_PAV_LEVELS), 8, 3)
        return torch.from_numpy(np.quantile(x, _PAV_LEVELS, axis=0).astype(np.float32))

    return {
        "levels": torch.from_numpy(_PAV_LEVELS.copy()),
        "healthy": q(ref),
        "all": q(pav),
        "n_healthy": int(len(healthy)),
        "n_all": int(len(pav)),
    }


class PavNormalizer:
    """Min-max normalisation of raw PAVs per (pair, metric) with training statistics, clipped to [0, 1]."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        self.lo = np.asarray(lo, dtype=np.float32)
        self.hi = np.asarray(hi, dtype=np.float32)

    @classmethod
    def fit(cls, pav: np.ndarray) -> PavNormalizer:
        pav = np.asarray(pav, dtype=np.float32)
        return cls(pav.min(axis=0), pav.max(axis=0))

    def __call__(self, pav: np.ndarray) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return np.clip((np.asarray(pav, dtype=np.float32) - self.lo) / span, 0.0, 1.0).astype(np.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"min": torch.from_numpy(self.lo.copy()), "max": torch.from_numpy(self.hi.copy())}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PavNormalizer:
        return cls(torch.as_tensor(state["min"]).numpy(), torch.as_tensor(state["max"]).numpy())


class FrameBank:
    """The frames of chosen sequences of a store, width-cut, as uint8 (in RAM or streamed).

    - ``store``: a :class:`CacheStore` or a store path; ``indices``: store indices (in the order
      the bank keeps them).
    - ``max_frames``: keep only the first ``max_frames`` frames of each sequence (evaluation).
    - ``cut_pixels``: width cut per side (0 = none).
    - ``max_ram_bytes``: hold the frames in RAM when they fit (``None`` = always), else stream.
    - ``shared``: put the RAM frames in shared memory (for ``spawn``/``forkserver`` workers).

    Attributes: ``store_path``, ``store_indices`` int64 ``[n]``, ``labels`` int64 ``[n]``,
    ``ids`` (list of str), ``lengths`` int64 ``[n]`` (after ``max_frames``), ``offsets`` int64
    ``[n + 1]`` into the bank, ``pav`` float32 ``[n, 8, 3]`` (raw), ``in_ram``, ``nbytes``,
    ``frame_shape`` ``(C, H, W)`` after the cut.
    """

    def __init__(
        self,
        store: CacheStore | str | Path,
        indices: Sequence[int] | np.ndarray,
        *,
        cut_pixels: int = 10,
        max_frames: int | None = None,
        max_ram_bytes: int | None = None,
        shared: bool = False,
    ):
        self._store: CacheStore | None = store if isinstance(store, CacheStore) else None
        self.store_path = Path(store.path if isinstance(store, CacheStore) else store)
        st = self.store
        self.store_indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.store_indices.size and (
            self.store_indices.min() < 0 or self.store_indices.max() >= st.n_sequences
        ):
            raise IndexError(f"{self.store_path}: sequence indices out of range (0..{st.n_sequences - 1})")
        self.cut_pixels = int(cut_pixels)
        self.max_frames = None if max_frames is None else int(max_frames)
        self.labels = st.labels[self.store_indices].astype(np.int64)
        self.ids = [st.ids[i] for i in self.store_indices]
        self.pav = st.pav[self.store_indices].astype(np.float32)
        self.full_lengths = (st.offsets[self.store_indices + 1] - st.offsets[self.store_indices]).astype(
            np.int64
        )
        self.lengths = (
            self.full_lengths if self.max_frames is None else np.minimum(self.full_lengths, self.max_frames)
        )
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        c, h, w = tuple(st.frames.shape[1:])
        self.frame_shape = (c, h, w - 2 * max(0, self.cut_pixels))
        self.nbytes = int(self.offsets[-1]) * int(np.prod(self.frame_shape))
        self.in_ram = max_ram_bytes is None or self.nbytes <= max_ram_bytes
        self._tensor: torch.Tensor | None = None  # RAM frames (shared memory when asked)
        self._frames: np.ndarray | None = None
        if self.in_ram:
            self._load(shared)

    # -- storage ------------------------------------------------------------------------------
    @property
    def store(self) -> CacheStore:
        """The store (opened lazily: after unpickling in a worker, each process opens its own)."""
        if self._store is None:
            self._store = open_cache(self.store_path)
        return self._store

    @property
    def frames(self) -> np.ndarray | None:
        """uint8 ``[sum T, C, H, W]`` in RAM, or ``None`` when streaming."""
        if self._frames is None and self._tensor is not None:
            self._frames = self._tensor.numpy()
        return self._frames

    def _load(self, shared: bool) -> None:
        tensor = torch.empty((int(self.offsets[-1]), *self.frame_shape), dtype=torch.uint8)
        if shared:
            tensor.share_memory_()
        out = tensor.numpy()
        n = len(self.store_indices)
        for g in range(0, n, _LOAD_GROUP):
            sel = slice(g, min(n, g + _LOAD_GROUP))
            raw, raw_off = self.store.load_frames(self.store_indices[sel])
            for j, i in enumerate(range(sel.start, sel.stop)):
                t = int(self.lengths[i])
                src = raw[raw_off[j] : raw_off[j] + t]
                out[self.offsets[i] : self.offsets[i] + t] = width_cut(src, self.cut_pixels)
        self._tensor = tensor
        self._frames = out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None  # zarr handles are re-opened per process
        state["_frames"] = None  # numpy view of _tensor, rebuilt lazily
        return state

    def __len__(self) -> int:
        return len(self.store_indices)

    # -- access -------------------------------------------------------------------------------
    def sequences(self, js: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frames of bank entries ``js`` (first ``max_frames``), width-cut, packed:
        ``(uint8 [sum T, C, H, W], offsets [len(js) + 1])``."""
        js = np.asarray(js, dtype=np.int64).reshape(-1)
        lengths = self.lengths[js]
        offsets = np.zeros(len(js) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        frames = self.frames
        if frames is not None:
            index = np.concatenate(
                [np.arange(self.offsets[j], self.offsets[j] + self.lengths[j]) for j in js]
            )
            return np.take(frames, index, axis=0), offsets
        out = np.empty((int(offsets[-1]), *self.frame_shape), dtype=np.uint8)
        raw, raw_off = self.store.load_frames(self.store_indices[js])
        for q in range(len(js)):
            t = int(lengths[q])
            out[offsets[q] : offsets[q + 1]] = width_cut(raw[raw_off[q] : raw_off[q] + t], self.cut_pixels)
        return out, offsets

    def gather(self, js: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Clips by index: ``local [n, F]`` frame indices within bank entries ``js [n]`` ->
        uint8 ``[n * F, C, H, W]`` (one allocation, one ``np.take``)."""
        js = np.asarray(js, dtype=np.int64)
        local = np.asarray(local, dtype=np.int64)
        n, f = local.shape
        out = np.empty((n * f, *self.frame_shape), dtype=np.uint8)
        frames = self.frames
        if frames is not None:
            index = (self.offsets[js][:, None] + local).reshape(-1)
            np.take(frames, index, axis=0, out=out)
            return out
        # streaming: read each distinct sequence once (one chunk each), then gather
        uniq, inverse = np.unique(js, return_inverse=True)
        seq_frames, seq_off = self.sequences(uniq)
        index = (seq_off[:-1][inverse][:, None] + local).reshape(-1)
        np.take(seq_frames, index, axis=0, out=out)
        return out


class TripletBatches(IterableDataset):
    """Endless P x K batches over a :class:`FrameBank` (see the module docstring).

    ``p`` is the global number of ids per step; with ``world_size > 1`` each rank yields its
    ``p // world_size`` ids x ``k`` samples. ``start_step``: first step to produce (resume).
    ``pav_normalizer``: adds normalised PAVs to the batches (DRF).
    """

    def __init__(
        self,
        bank: FrameBank,
        p: int = 8,
        k: int = 8,
        frames: int = 30,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        pav_normalizer: PavNormalizer | None = None,
    ):
        super().__init__()
        if p < 1 or k < 1 or frames < 1:
            raise ValueError(f"p, k and frames must be >= 1, got {p}, {k}, {frames}")
        if p % world_size:
            raise ValueError(f"P={p} ids per batch cannot be split evenly across {world_size} ranks")
        if len(bank) < p:
            raise ValueError(
                f"P={p} distinct ids per batch but the training set has only {len(bank)} sequences"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.bank = bank
        self.p, self.k, self.frames = int(p), int(k), int(frames)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.start_step = int(start_step)
        self.batches_per_epoch = len(bank) // self.p
        self._perm_cache: tuple[int, np.ndarray] | None = None
        self.pav_normalizer = pav_normalizer
        self._pav = None if pav_normalizer is None else pav_normalizer(bank.pav)

    # -- the pure per-step functions ----------------------------------------------------------
    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, ID_STREAM, epoch])
            self._perm_cache = (epoch, rng.permutation(len(self.bank)))
        return self._perm_cache[1]

    def step_ids(self, step: int) -> np.ndarray:
        """The ``P`` distinct bank entries of step ``step`` (all ranks), shape ``[P]``."""
        epoch, b = divmod(int(step), self.batches_per_epoch)
        return self._permutation(epoch)[b * self.p : (b + 1) * self.p]

    def rank_ids(self, step: int) -> np.ndarray:
        share = self.p // self.world_size
        return self.step_ids(step)[self.rank * share : (self.rank + 1) * share]

    def frame_indices(self, step: int, js: np.ndarray) -> np.ndarray:
        """``[len(js) * K, frames]`` local frame indices for this rank's ids at ``step``."""
        rng = np.random.default_rng([self.seed, FRAME_STREAM, int(step), self.rank])
        f = self.frames
        out = np.empty((len(js) * self.k, f), dtype=np.int64)
        row = 0
        for j in js:
            t = int(self.bank.lengths[j])
            for _ in range(self.k):
                out[row] = rng.choice(t, f, replace=False) if t >= f else rng.integers(0, t, f)
                row += 1
        return out

    def batch(self, step: int) -> Batch:
        """The batch of ``step`` for this rank."""
        js = self.rank_ids(step)
        local = self.frame_indices(step, js)
        rows = np.repeat(js, self.k)
        clips = self.bank.gather(rows, local)
        n = len(rows)
        pav = torch.from_numpy(self._pav[rows]) if self._pav is not None else torch.empty(0)
        return Batch(
            frames=torch.from_numpy(clips),
            seq_lengths=torch.full((n,), self.frames, dtype=torch.int64),
            labels=torch.from_numpy(self.bank.labels[rows]),
            seq_ids=torch.from_numpy(self.bank.store_indices[rows]),
            pav=pav,
        )

    def state_dict(self, next_step: int) -> dict[str, int]:
        """What a checkpoint needs to continue this stream at ``next_step``."""
        return {
            "seed": self.seed,
            "next_step": int(next_step),
            "p": self.p,
            "k": self.k,
            "frames": self.frames,
        }

    # -- iteration ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        wid, nworkers = (0, 1) if info is None else (info.id, info.num_workers)
        step = self.start_step + wid
        while True:
            yield self.batch(step)
            step += nworkers


def eval_batches(
    bank: FrameBank, batch_size: int = 8, pav_normalizer: PavNormalizer | None = None
) -> Iterator[Batch]:
    """Whole sequences in bank order (first ``bank.max_frames`` frames, natural order),
    ``batch_size`` per batch, packed with their lengths."""
    n = len(bank)
    pav_all = None if pav_normalizer is None else pav_normalizer(bank.pav)
    for start in range(0, n, batch_size):
        js = np.arange(start, min(n, start + batch_size))
        frames, offsets = bank.sequences(js)
        yield Batch(
            frames=torch.from_numpy(frames),
            seq_lengths=torch.from_numpy(np.diff(offsets)),
            labels=torch.from_numpy(bank.labels[js]),
            seq_ids=torch.from_numpy(bank.store_indices[js]),
            pav=torch.from_numpy(pav_all[js]) if pav_all is not None else torch.empty(0),
        )


def worker_context() -> str | None:
    """``"forkserver"`` when this process runs threads besides the main one, else ``None`` (default)."""
    return "forkserver" if threading.active_count() > 1 else None


def make_loader(dataset: TripletBatches, num_workers: int = 0) -> Iterator[Batch]:
    """An iterator over the dataset's batches: the dataset itself (``num_workers=0``) or a
    ``DataLoader(batch_size=None)`` with ``num_workers`` processes (forkserver when threads run)
    that die with this process (:mod:`sconet._procs`)."""
    if num_workers <= 0:
        return iter(dataset)
    from torch.utils.data import DataLoader

    from sconet._procs import forkserver_dies_with_parent, worker_init

    context = worker_context()
    if context == "forkserver":
        forkserver_dies_with_parent()
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        multiprocessing_context=context,
        prefetch_factor=2,
        persistent_workers=False,
        worker_init_fn=worker_init,  # workers (and the forkserver) die with the trainer, even on kill -9
    )
    return iter(loader)


_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Keep freed large blocks in the heap on glibc (CPU training and evaluation).

    By default glibc serves allocations above a (dynamic) threshold with ``mmap`` and returns them
    with ``munmap``, so every CPU step page-faults its activation buffers afresh: measured on 2
    cores with the width-1/16 demo model, half of a training step and two thirds of an
    evaluation batch were kernel time. Raising ``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD``
    keeps the memory mapped (the process keeps its peak heap; 2-3x faster here). Process-wide,
    applied once; a no-op off glibc or with ``SCONET_NO_MALLOPT=1``. Returns whether it applied.
    """
    global _MALLOC_TUNED
    import os
    import sys

    if _MALLOC_TUNED:
        return True
    if os.environ.get("SCONET_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) or libc.mallopt(m_mmap_threshold, 32 << 20)
        ok = ok and libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = bool(ok)
    return _MALLOC_TUNED

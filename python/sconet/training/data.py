"""A run's data: find (or build) the cache, resolve the split and carve the validation ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconet.cache import CacheStore, open_cache
from sconet.classes import CLASSES
from sconet.training.config import TrainConfig, TrainError


def carve_validation(
    train_indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sconet.data.carve_validation` on store indices (``labels``: class index per store
    sequence). Returns sorted ``(train, val)`` store indices."""
    from sconet.data import carve_validation as carve

    keys = [str(int(i)) for i in train_indices]
    tr, va = carve(keys, [CLASSES[int(labels[i])] for i in train_indices], fraction, seed)
    as_array = lambda xs: np.array(sorted(int(x) for x in xs), dtype=np.int64)  # noqa: E731
    return as_array(tr), as_array(va)


@dataclass
class DataSetup:
    """The cache and the three id sets (store indices) of a run."""

    store: CacheStore
    split_name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    messages: list[str] = field(default_factory=list)

    def ids(self, which: np.ndarray) -> list[str]:
        return [self.store.ids[i] for i in which]

    def cache_info(self) -> dict[str, Any]:
        a = self.store.attrs
        info = {
            "fingerprint": self.store.fingerprint,
            "render": a.get("render"),
            "renderer_version": a.get("renderer_version"),
            "dataset": self.store.dataset,
            "pose_source": self.store.pose_source,
            "path": str(self.store.path),
        }
        prov = self.store.provenance
        if prov is not None:  # imported maps: where from and how they were described
            info["provenance"] = {k: prov.get(k) for k in ("kind", "source", "described_as", "stated")}
        return info

    def split_info(self) -> dict[str, Any]:
        return {
            "name": self.split_name,
            "train_ids": self.ids(self.train),
            "val_ids": self.ids(self.val),
            "test_ids": self.ids(self.test),
        }


def _rebuild_hint(d: Any) -> str:
    poses = f" --poses {d.poses}" if d.poses is not None else ""
    return f"rebuild it with `sconet cache{poses} --representation {d.representation}`"


def _find_or_build_cache(config: TrainConfig, log: Callable[[str], None], build: bool) -> Path:
    """The store the run trains on: ``data.cache``, else the one with the recipe's render settings
    (:meth:`DataConfig.render_spec`) for ``data.poses``, built first if there is none yet. A store
    is checked against ``data.poses`` (or the built-in synthetic data) with the inputs fingerprint
    ``sconet cache`` uses: a stale store of the synthetic data is rebuilt, one of other data is
    refused with the way out."""
    from sconet.cache import CacheConfig, build_cache, find_cache, open_cache, stale_inputs
    from sconet.evaluation.maps import describe_render

    d = config.data
    if d.cache:
        given = Path(d.cache).expanduser()
        if d.poses is not None and build:
            problem = stale_inputs(open_cache(given), d.poses)
            if problem is not None:
                raise TrainError(f"{given}: {problem}; {_rebuild_hint(d)} and pass it as --cache")
        return given
    spec = d.render_spec()
    render = spec.resolve()
    found = find_cache(render, poses=d.poses)
    what = "the built-in synthetic data" if d.poses is None else str(d.poses)
    settings = describe_render(render.to_dict()) + (f" ({spec.describe()})" if spec.stated else "")
    if not build:  # other DDP ranks: rank 0 has checked (or built) the store before the barrier
        if found is None:
            raise TrainError(
                f"the cache of {what} [{settings}] is being built by rank 0 "
                "but was not found after the barrier"
            )
        return found
    if found is not None:
        problem = stale_inputs(open_cache(found), d.poses)
        if problem is None:
            return found
        if d.poses is not None:
            raise TrainError(f"{found}: {problem}; {_rebuild_hint(d)} [{settings}]")
        log(f"{found}: {problem}: rebuilding the store of the built-in synthetic data")
    else:
        log(f"no cache of {what} with the render settings [{settings}] yet: building it now")
    result = build_cache(
        CacheConfig(
            poses=Path(d.poses).expanduser() if d.poses is not None else None,
            render=render,
            split=Path(d.split).expanduser() if d.split is not None else None,
        )
    )
    n_seq, n_frames = result.n_sequences, result.n_frames
    log(f"built {result.path} ({n_seq} sequences, {n_frames} frames, {result.seconds:.0f} s; runs reuse it)")
    for warning in result.warnings:
        log(f"warning: {warning}")
    return result.path


def _default_split(store: CacheStore) -> Path:
    """The split of a run given none: only the built-in synthetic data comes with one."""
    from sconet.cache import SYNTHETIC_DATASET
    from sconet.data.synth import default_split_file

    if store.dataset != SYNTHETIC_DATASET:
        raise TrainError(
            f"the cache {store.path} holds dataset {store.dataset!r}, not the built-in synthetic one: "
            "give --split (an OpenGait split JSON)"
        )
    return default_split_file()


def _load_split(config: TrainConfig, store: CacheStore) -> tuple[str, list[str], list[str]]:
    from sconet.data import load_split

    path = Path(config.data.split).expanduser() if config.data.split is not None else _default_split(store)
    split = load_split(path)
    return str(split.name), [str(x) for x in split.train_ids], [str(x) for x in split.test_ids]


def _check_store(config: TrainConfig, store: CacheStore) -> list[str]:
    """The store's files as built (cheap; see :func:`sconet.cache.check_store_files`), and
    warnings: a recipe representation the store does not hold, files its build left out."""
    from sconet.cache import check_store_files

    files = check_store_files(store.path, store.attrs)
    if files.problems:
        more = f" (and {len(files.problems) - 1} more)" if len(files.problems) > 1 else ""
        raise TrainError(
            f"{files.problems[0]}{more}: the store is damaged; rebuild it with `sconet cache --rebuild` "
            "and the options it was built with"
        )
    messages = []
    held = store.render_config.representation.name if store.render_config is not None else None
    if config.data.cache and held is not None and held != config.data.representation:
        messages.append(
            f"data.representation {config.data.representation!r} is ignored: the cache {store.path} holds "
            f"{held!r} maps"
        )
    skipped = store.attrs.get("skipped") or []
    if skipped:
        messages.append(
            f"the cache {store.path} was built without {len(skipped)} bad pose file(s) (--skip-bad)"
        )
    return messages


def prepare_data(config: TrainConfig, log: Callable[[str], None] = print, build: bool = True) -> DataSetup:
    """Open (or, for the built-in synthetic data, build) the cache and resolve the split."""
    from sconet.cache import CacheError

    path = _find_or_build_cache(config, log, build)
    try:
        store = open_cache(path)
    except CacheError as exc:
        raise TrainError(str(exc)) from None
    messages = _check_store(config, store) if build else []
    name, train_ids, test_ids = _load_split(config, store)
    train = store.indices_of(train_ids)
    test = store.indices_of(test_ids)
    for what, ids, idx in (("training", train_ids, train), ("test", test_ids, test)):
        if len(idx) == 0:
            raise TrainError(
                f"none of the {len(ids)} {what} ids of split {name!r} are in the cache {store.path}"
            )
        found = {store.ids[i] for i in idx}
        if len(found) < len(set(ids)):
            messages.append(f"{len(set(ids)) - len(found)} {what} ids of split {name!r} are not in the cache")
    train, val = carve_validation(train, store.labels, config.data.val_fraction, config.run.seed)
    return DataSetup(store, name, train, val, test, messages)

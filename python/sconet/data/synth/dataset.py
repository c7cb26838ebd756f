"""Writing the synthetic Scoliosis1K: the release layout, split files, manifest and the default copy.

``<out>/<id>/<Label>/<view>/<view>.pkl`` (float32 ``[T, 17, 3]``, pickle protocol 4), OpenGait
split files ``Scoliosis1K_<ratio>.json`` and a ``synthetic.json`` manifest. The label assignment
depends only on ``(seed, n_sequences, class_totals)``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sconet._io import atomic_write_json
from sconet._paths import cache_root
from sconet.classes import CLASSES
from sconet.data import Split
from sconet.data.synth.generator import (
    _LABEL_FOLDERS,
    _RELEASE_TOTAL,
    DEFAULT_SPLIT_RATIO,
    FPS,
    GENERATOR_VERSION,
    IMAGE_SIZE,
    MANIFEST_NAME,
    OFFICIAL_N_TRAIN,
    OFFICIAL_RATIOS,
    SynthConfig,
    SynthError,
    SynthExistsError,
    generate_sequence,
    synthetic_ids,
    synthetic_labels,
    synthetic_view,
)

# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def parse_ratio(ratio: str | Sequence[int]) -> tuple[int, int, int]:
    """``"1:1:2"`` -> ``(1, 1, 2)`` = positive:neutral:negative (positive integers)."""
    parts: list[Any] = ratio.strip().split(":") if isinstance(ratio, str) else list(ratio)
    try:
        vals = tuple(int(str(x).strip()) for x in parts)
    except ValueError:
        raise SynthError(
            f"ratio {ratio!r}: expected 'positive:neutral:negative' integers, e.g. '1:1:2'"
        ) from None
    if len(vals) != 3 or min(vals) <= 0:
        raise SynthError(
            f"ratio {ratio!r}: expected three positive integers 'positive:neutral:negative', e.g. '1:1:2'"
        )
    return vals


def split_name(ratio: str | Sequence[int]) -> str:
    """Official split file stem: ``"1:1:2"`` -> ``"Scoliosis1K_112"``, ``"1:1:16"`` -> ``"..._1116"``."""
    return "Scoliosis1K_" + "".join(str(v) for v in parse_ratio(ratio))


def make_split(
    ids: Sequence[str],
    labels: Sequence[str] | Mapping[str, str],
    ratio: str | Sequence[int],
    n_train: int = OFFICIAL_N_TRAIN,
    seed: int = 0,
    min_per_class: int = 0,
) -> Split:
    """Random split whose training set has the class ratio positive:neutral:negative.

    Training positives = neutrals = ``floor(n_train * r / sum(ratio))`` for their ratio parts
    ``r`` (but at least ``min_per_class``), negatives = the rest of ``n_train``; the test set is
    every other id. With the defaults this gives the official training counts
    186/186/373 (1:1:2), 124/124/497 (1:1:4), 74/74/597 (1:1:8; the official file has 596) and
    41/41/663 (1:1:16). Deterministic in ``(seed, ratio)``; ids sorted in each set.
    Raises :class:`SynthError` if a class has too few sequences.
    """
    r_pos, r_neu, r_neg = parse_ratio(ratio)
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise SynthError("make_split: duplicate ids")
    if isinstance(labels, Mapping):
        lab = {i: str(labels[i]).lower() for i in ids}
    else:
        if len(labels) != len(ids):
            raise SynthError(f"make_split: {len(labels)} labels for {len(ids)} ids")
        lab = {i: str(x).lower() for i, x in zip(ids, labels, strict=True)}
    bad = sorted({v for v in lab.values() if v not in CLASSES})
    if bad:
        raise SynthError(f"make_split: unknown label(s) {bad}")
    if not 0 < n_train <= len(ids):
        raise SynthError(f"make_split: n_train must be in [1, {len(ids)}], got {n_train}")
    total = r_pos + r_neu + r_neg
    k_pos = max(n_train * r_pos // total, min_per_class)
    k_neu = max(n_train * r_neu // total, min_per_class)
    want = {"positive": k_pos, "neutral": k_neu, "negative": n_train - k_pos - k_neu}
    rng = np.random.default_rng([int(seed), r_pos, r_neu, r_neg, 0x5B17])
    train: list[str] = []
    for cls in ("positive", "neutral", "negative"):
        members = sorted(i for i in ids if lab[i] == cls)
        k = want[cls]
        if k < 0 or k > len(members):
            raise SynthError(
                f"ratio {':'.join(map(str, (r_pos, r_neu, r_neg)))} with {n_train} training sequences needs "
                f"{k} {cls} training sequences, but only {len(members)} exist"
            )
        pick = rng.permutation(len(members))[:k]
        train.extend(members[j] for j in pick)
    train_set = set(train)
    return Split(
        split_name((r_pos, r_neu, r_neg)),
        tuple(sorted(train)),
        tuple(i for i in sorted(ids) if i not in train_set),
    )


# --------------------------------------------------------------------------------------------
# writing the dataset
# --------------------------------------------------------------------------------------------


def _scaled_n_train(n: int) -> int:
    if n == _RELEASE_TOTAL:
        return OFFICIAL_N_TRAIN
    return max(1, min(n - 1, round(n * OFFICIAL_N_TRAIN / _RELEASE_TOTAL))) if n > 1 else 1


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def write_synthetic(
    out: str | os.PathLike[str],
    config: SynthConfig | None = None,
    ratios: Sequence[str] = ("1:1:2",),
    overwrite: bool = False,
    n_train: int | None = None,
) -> Path:
    """Write the synthetic dataset to ``out`` in the release layout; returns ``out``.

    ``<out>/<id>/<Label>/<view>/<view>.pkl`` (float32 ``[T, 17, 3]``, pickle protocol 4), one
    OpenGait split file per ratio (``Scoliosis1K_112.json`` for ``"1:1:2"``; training size
    ``n_train``, default 745 for the full 1,493 sequences and proportionally fewer for smaller
    datasets, at least one training sequence per class), and :data:`MANIFEST_NAME`.

    Everything is written into a hidden temporary folder next to ``out`` and renamed into place
    at the end, so an interrupted run leaves no half-written dataset. An existing non-empty
    ``out`` raises :class:`SynthExistsError` unless ``overwrite=True`` (then it is replaced).
    """
    config = config or SynthConfig()
    out = Path(out).expanduser()
    ratios = tuple(ratios)
    for r in ratios:
        parse_ratio(r)
    if out.exists() and not out.is_dir():
        raise SynthExistsError(f"{out}: exists and is not a folder")
    if _is_nonempty_dir(out) and not overwrite:
        raise SynthExistsError(f"{out}: exists and is not empty (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        ids = synthetic_ids(config)
        labels = synthetic_labels(config)
        views: list[str] = []
        for i, (sid, label) in enumerate(zip(ids, labels, strict=True)):
            view = synthetic_view(i, config)
            views.append(view)
            folder = tmp / sid / _LABEL_FOLDERS[label] / view
            folder.mkdir(parents=True)
            pose = generate_sequence(i, label, config)
            (folder / f"{view}.pkl").write_bytes(pickle.dumps(pose, protocol=4))
        nt = int(n_train) if n_train is not None else _scaled_n_train(config.n_sequences)
        label_of = dict(zip(ids, labels, strict=True))
        split_info = {}
        for r in ratios:
            split = make_split(ids, labels, r, n_train=nt, seed=config.seed, min_per_class=1)
            split.save(tmp / f"{split.name}.json")
            tr = Counter(label_of[i] for i in split.train_ids)
            te = Counter(label_of[i] for i in split.test_ids)
            split_info[split.name] = {
                "ratio": r,
                "train": {c: tr.get(c, 0) for c in CLASSES},
                "test": {c: te.get(c, 0) for c in CLASSES},
            }
        from sconet import __version__

        manifest = {
            "generator": "sconet.synth",
            "generator_version": GENERATOR_VERSION,
            "sconet_version": __version__,
            "config": config.to_dict(),
            "counts": {
                "sequences": config.n_sequences,
                "frames": config.n_sequences * config.frames,
                "per_class": {c: n for c, n in zip(CLASSES, config.class_counts(), strict=True)},
            },
            "views": dict(sorted(Counter(views).items())),
            "splits": split_info,
            "image_size": list(IMAGE_SIZE),
            "fps": FPS,
            "layout": (
                "<id>/<Label>/<view>/<view>.pkl, float32 [T, 17, 3] (x, y, confidence), pickle protocol 4"
            ),
        }
        atomic_write_json(tmp / MANIFEST_NAME, manifest, fsync=False)
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.is_dir() and not any(out.iterdir()):
        try:
            out.rmdir()
        except OSError:
            pass
    if out.exists():
        if not overwrite:
            raise SynthExistsError(f"{out}: exists and is not empty (pass overwrite=True to replace it)")
        old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(tmp, out)
    except OSError as exc:  # someone else created it meanwhile
        raise SynthExistsError(f"{out}: appeared while writing ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------------------------
# the default dataset
# --------------------------------------------------------------------------------------------


def default_synthetic_root() -> Path:
    """``<cache root>/synthetic`` (cache root: ``$SCONET_CACHE`` or ``./data_cache``)."""
    return cache_root() / "synthetic"


def default_split_file() -> Path:
    """The split file of :data:`DEFAULT_SPLIT_RATIO` in the built-in synthetic dataset (made on first use)."""
    return ensure_synthetic() / f"{split_name(DEFAULT_SPLIT_RATIO)}.json"


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``synthetic.json`` manifest of a synthetic dataset, or ``None`` if absent/unreadable."""
    import json

    try:
        doc = json.loads((Path(root) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def manifest_matches(root: str | os.PathLike[str], config: SynthConfig, ratios: Sequence[str] = ()) -> bool:
    """True when ``root`` holds a complete synthetic dataset made with ``config`` by this
    generator version, with the split files of ``ratios``."""
    root = Path(root)
    doc = read_manifest(root)
    if doc is None or doc.get("generator_version") != GENERATOR_VERSION:
        return False
    try:
        if SynthConfig.from_dict(doc.get("config", {})) != config:
            return False
    except (TypeError, ValueError):
        return False
    for r in ratios:
        if not (root / f"{split_name(r)}.json").is_file():
            return False
    n_dirs = sum(1 for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    return n_dirs == config.n_sequences


def ensure_synthetic(root: str | os.PathLike[str] | None = None, config: SynthConfig | None = None) -> Path:
    """Return the root of the synthetic dataset, generating it on first use.

    ``root`` defaults to :func:`default_synthetic_root`. An existing dataset is reused when its
    manifest matches ``config`` and the generator version and the four official split files
    (:data:`OFFICIAL_RATIOS`) exist; a synthetic dataset made with other settings is replaced.
    A non-empty folder that is not a synthetic dataset is never touched (:class:`SynthError`).
    Safe against concurrent callers: each writes its own temporary folder, the first rename
    wins and the others reuse its result.
    """
    config = config or SynthConfig()
    root = Path(root).expanduser() if root is not None else default_synthetic_root()
    if manifest_matches(root, config, OFFICIAL_RATIOS):
        return root
    if _is_nonempty_dir(root) or (root.exists() and not root.is_dir()):
        if read_manifest(root) is None:
            raise SynthError(
                f"{root}: exists and is not a sconet synthetic dataset (no {MANIFEST_NAME}); "
                "move it away or point $SCONET_CACHE elsewhere"
            )
        overwrite = True
    else:
        overwrite = False
    try:
        return write_synthetic(root, config, OFFICIAL_RATIOS, overwrite=overwrite)
    except SynthExistsError:
        if manifest_matches(root, config, OFFICIAL_RATIOS):
            return root
        raise

"""sconet checkpoints: safe loading, atomic saving, keep-the-best bookkeeping.

A sconet checkpoint is a ``torch.save``d dict of tensors and plain containers only, so it loads
with ``torch.load(weights_only=True)`` (no code runs on load):

================  ===============================================================================
key               content
================  ===============================================================================
format            ``"sconet-checkpoint"``; ``format_version`` 1
model             state dict with OpenGait key names (:mod:`sconet.models`)
model_config      :meth:`sconet.models.ModelConfig.to_dict`
optimizer         optimizer state dict (absent in weights-only files)
scheduler         LR scheduler state dict
iteration         iterations done
recipe            the full resolved :class:`sconet.training.TrainConfig` as a dict
cache             ``{"fingerprint", "render", "renderer_version", "dataset", "pose_source", "path"}``
class_order       ``["negative", "neutral", "positive"]``
split             ``{"name", "train_ids", "val_ids", "test_ids"}``
pav_norm          ``{"min", "max"}`` PAV normalisation of DRF models (else absent)
pav_stats         quantiles of the training PAVs (healthy and all; :func:`sconet.stream.pav_reference`)
metrics           the evaluation that selected this file (``{"test_f1": ...}``), may be empty
sconet_version    version string
rng               ``{"torch", "numpy", "python", "cuda", "sampler"}``
================  ===============================================================================

OpenGait checkpoints (``{"model": state_dict, "optimizer", "scheduler", "iteration"}``) are
read too (:attr:`Checkpoint.kind` ``"opengait"``); they carry no render settings, split or class
order, so the caller supplies those.

:class:`CheckpointKeeper` keeps, for each metric, the ``keep_n`` best evaluated checkpoints
(``iter-0027000-test_f1-0.8870.pt``), deleting those that fall out of every top list.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sconet._io import write_error_reason
from sconet.checkpoint_schema import DIGEST_KEY, digest_problem, payload_digest, schema_problem

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "CheckpointKeeper",
    "KeptCheckpoint",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "rng_state",
    "set_rng_state",
    "infer_model_config",
]

FORMAT = "sconet-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message starts with the file path."""


# ----------------------------------------------------------------------------------------------
# load / save
# ----------------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, with every failure as a :class:`CheckpointError`.

    Never unpickles arbitrary objects: a file that needs globals beyond tensors and plain
    containers is refused before any of its code could run.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        hit = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if hit:
            raise CheckpointError(
                f"{path}: refused: the file asks to load the Python object {hit.group(1)}; only tensors and "
                "plain containers are accepted (nothing from the file was executed)"
            ) from None
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint, or a damaged one (its pickle data cannot be read safely)"
        ) from None
    except EOFError:
        raise CheckpointError(f"{path}: empty or truncated checkpoint file") from None
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path}: truncated or damaged checkpoint ({exc})") from None
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "zip" in msg.lower() or "archive" in msg.lower() or "stream" in msg.lower():
            short = msg.split(". ")[0]
            raise CheckpointError(f"{path}: truncated or damaged checkpoint ({short})") from None
        raise CheckpointError(f"{path}: cannot load checkpoint ({msg})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    except Exception as exc:  # anything else torch raises on garbage input
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(obj).__name__}, expected a dict)")
    return dict(obj)


def save_checkpoint(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``payload`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    The payload is serialised in memory first and written with plain file I/O, so a full disk or
    a file size limit is a :class:`CheckpointError` naming the file and the cause (torch's own
    writer reports only "file write failed"); nothing is left at ``path`` or beside it then.

    A sconet payload (``format`` = :data:`FORMAT`) gets its ``digest`` entry here
    (:mod:`sconet.checkpoint_schema`), which every read checks.
    """
    if payload.get("format") == FORMAT:
        payload = {**payload, DIGEST_KEY: payload_digest(payload)}
    path = Path(path)
    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot save the checkpoint ({write_error_reason(exc)}); make room, then continue "
            "the run from its last saved checkpoint with --resume"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ----------------------------------------------------------------------------------------------
# reading a checkpoint's meaning
# ----------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``kind``: ``"sconet"`` or ``"opengait"`` (foreign: no metadata)."""

    path: Path
    kind: str
    state_dict: dict[str, torch.Tensor]
    raw: dict[str, Any]
    model_config: dict[str, Any] | None = None
    iteration: int = 0
    class_order: tuple[str, ...] | None = None
    render: dict[str, Any] | None = None
    renderer_version: str | None = None
    cache_fingerprint: str | None = None
    dataset: str | None = None
    pose_source: dict[str, Any] | None = None
    split: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    """e.g. that a file carries no digest, so its integrity was not checked."""

    @property
    def is_sconet(self) -> bool:
        return self.kind == "sconet"


def _tensor_state_dict(path: Path, sd: Any, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{path}: {what} is not a state dict")
    bad = [str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {what} holds non-tensor entries: {', '.join(bad[:5])}")
    return {str(k): v for k, v in sd.items()}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and classify a checkpoint (sconet's own, or an OpenGait-style ``{"model": ...}``).

    The one loader of checkpoints: a sconet file's entries are checked against the schema and
    its tensors against the digest saved with them (:mod:`sconet.checkpoint_schema`). Raises
    :class:`CheckpointError` naming the file for truncated, hostile, malformed, damaged or
    unrecognisable files.
    """
    path = Path(path).expanduser()
    raw = load_checkpoint(path, map_location)
    unchecked = f"{path} carries no digest (a foreign or older checkpoint): its integrity was not checked"
    if raw.get("format") == FORMAT:
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: sconet checkpoint format version {version!r}; this sconet reads version "
                f"{FORMAT_VERSION}"
            )
        problem = schema_problem(raw) or digest_problem(raw)
        if problem:
            raise CheckpointError(f"{path}: {problem}")
        cache = raw["cache"]
        return Checkpoint(
            path=path,
            kind="sconet",
            state_dict=_tensor_state_dict(path, raw["model"], "'model'"),
            raw=raw,
            model_config=dict(raw["model_config"]),
            iteration=int(raw.get("iteration", 0)),
            class_order=tuple(raw["class_order"]),
            render=dict(cache["render"]) if isinstance(cache.get("render"), Mapping) else None,
            renderer_version=cache.get("renderer_version"),
            cache_fingerprint=cache.get("fingerprint"),
            dataset=cache.get("dataset"),
            pose_source=dict(source) if isinstance(source := cache.get("pose_source"), Mapping) else None,
            split=dict(raw.get("split") or {}),
            recipe=raw.get("recipe"),
            notes=[] if DIGEST_KEY in raw else [unchecked],
        )
    if "model" in raw and isinstance(raw["model"], Mapping):
        sd = _tensor_state_dict(path, raw["model"], "'model'")
        it = raw.get("iteration", 0)
        return Checkpoint(
            path=path,
            kind="opengait",
            state_dict=sd,
            raw=raw,
            iteration=int(it) if isinstance(it, int) and not isinstance(it, bool) else 0,
            notes=[unchecked],
        )
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        sd = {str(k): v for k, v in raw.items()}
        return Checkpoint(path=path, kind="opengait", state_dict=sd, raw=raw, notes=[unchecked])
    keys = ", ".join(sorted(map(str, raw))[:8])
    raise CheckpointError(
        f"{path}: not a sconet or OpenGait checkpoint (no 'format' or 'model' entry; keys: {keys or 'none'})"
    )


def infer_model_config(path: Path, sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """ModelConfig values read off an OpenGait-named state dict (foreign checkpoints)."""
    sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}
    try:
        conv1 = sd["Backbone.forward_block.conv1.conv.weight"]
        fc = sd["FCs.fc_bin"]
        neck = sd["BNNecks.fc_bin"]
    except KeyError as exc:
        raise CheckpointError(
            f"{path}: not a ScoNet state dict (no {exc.args[0]!r}; keys start with "
            f"{', '.join(sorted(sd)[:4])} ...)"
        ) from None
    width = conv1.shape[0] / 64.0
    config: dict[str, Any] = {
        "in_channels": int(conv1.shape[1]),
        "width": width,
        "parts": int(fc.shape[0]),
        "embed_dim": int(fc.shape[2]),
        "num_classes": int(neck.shape[2]),
        "arch": "drf" if any(k.startswith(("PGA.", "attention_layer.")) for k in sd) else "sconet",
    }
    return config


# ----------------------------------------------------------------------------------------------
# RNG states (plain containers and tensors only)
# ----------------------------------------------------------------------------------------------


def rng_state(sampler: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """torch / numpy (legacy global) / python / CUDA RNG states, plus the sampler state."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": [int(py[0]), [int(v) for v in py[1]], py[2]],
        "sampler": dict(sampler or {}),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        s = state["numpy"]
        keys = torch.as_tensor(s["keys"]).numpy().astype(np.uint32)
        np.random.set_state((s["kind"], keys, int(s["pos"]), int(s["has_gauss"]), float(s["gauss"])))
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((int(v), tuple(int(x) for x in internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all([torch.as_tensor(t, dtype=torch.uint8) for t in state["cuda"]])
        except Exception:  # pragma: no cover - fewer devices than when saved
            pass


# ----------------------------------------------------------------------------------------------
# keep the best
# ----------------------------------------------------------------------------------------------

_KEPT_RE = re.compile(r"^iter-(\d+)-([A-Za-z0-9_]+)-(-?[0-9.]+|nan)\.pt$")


@dataclass(frozen=True, order=True)
class KeptCheckpoint:
    metric: str
    value: float
    iteration: int
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "iteration": self.iteration,
            "path": str(self.path),
        }


class CheckpointKeeper:
    """Keeps the ``keep_n`` best evaluated checkpoints per metric in ``folder`` (higher is better).

    :meth:`offer` takes the metrics of one evaluation and a payload; for every metric where this
    evaluation ranks in the top ``keep_n`` (ties: the earlier iteration stays ahead), the payload
    is written as ``iter-<9 digits... 7>-<metric>-<value:.4f>.pt`` and the file that fell out of
    that metric's list is deleted. The payload is serialised once per evaluation; further names
    are hard links (copies where links are not supported). The lists are persisted in
    ``best.json`` and rebuilt from the folder on resume.
    """

    INDEX = "best.json"

    def __init__(
        self, folder: str | Path, keep_n: int = 3, metrics: Sequence[str] = ("test_f1", "test_accuracy")
    ):
        self.folder = Path(folder)
        self.keep_n = int(keep_n)
        self.metrics = tuple(metrics)
        self.kept: dict[str, list[KeptCheckpoint]] = {m: [] for m in self.metrics}
        self._load()

    @staticmethod
    def filename(iteration: int, metric: str, value: float) -> str:
        return f"iter-{int(iteration):07d}-{metric}-{value:.4f}.pt"

    def _load(self) -> None:
        index = self.folder / self.INDEX
        entries: list[KeptCheckpoint] = []
        if index.is_file():
            try:
                doc = json.loads(index.read_text())
                for e in doc.get("kept", []):
                    p = self.folder / Path(e["path"]).name
                    if p.is_file():
                        entries.append(
                            KeptCheckpoint(str(e["metric"]), float(e["value"]), int(e["iteration"]), p)
                        )
            except (OSError, ValueError, KeyError, TypeError):
                entries = []
        if not entries and self.folder.is_dir():
            for p in self.folder.iterdir():
                m = _KEPT_RE.match(p.name)
                if m:
                    entries.append(KeptCheckpoint(m.group(2), float(m.group(3)), int(m.group(1)), p))
        for e in entries:
            self.kept.setdefault(e.metric, []).append(e)
        for metric in self.kept:
            self.kept[metric].sort(key=self._rank)

    @staticmethod
    def _rank(e: KeptCheckpoint) -> tuple[float, int]:
        v = e.value if e.value == e.value else float("-inf")  # NaN ranks last
        return (-v, e.iteration)

    def would_keep(self, metric: str, value: float, iteration: int) -> bool:
        if self.keep_n <= 0:
            return False
        current = [e for e in self.kept.get(metric, []) if e.iteration != iteration]
        cand = KeptCheckpoint(metric, float(value), int(iteration), Path())
        ranked = sorted([*current, cand], key=self._rank)
        return ranked.index(cand) < self.keep_n

    def offer(
        self, iteration: int, metrics: Mapping[str, float], payload: Mapping[str, Any]
    ) -> list[KeptCheckpoint]:
        """Save ``payload`` under each metric where it ranks in the top ``keep_n``; return the new entries."""
        new: list[KeptCheckpoint] = []
        first: Path | None = None
        for metric in self.metrics:
            if metric not in metrics or metrics[metric] is None:
                continue
            value = float(metrics[metric])
            if not self.would_keep(metric, value, iteration):
                continue
            path = self.folder / self.filename(iteration, metric, value)
            if first is None:
                save_checkpoint(payload, path)
                first = path
            elif path != first:
                _link_or_copy(first, path)
            entry = KeptCheckpoint(metric, value, int(iteration), path)
            lst = [e for e in self.kept.setdefault(metric, []) if e.iteration != iteration]
            lst.append(entry)
            lst.sort(key=self._rank)
            dropped, self.kept[metric] = lst[self.keep_n :], lst[: self.keep_n]
            new.append(entry)
            for e in dropped:
                self._delete_if_unused(e.path)
        if new:
            self._save_index()
        return new

    def _delete_if_unused(self, path: Path) -> None:
        if any(e.path == path for lst in self.kept.values() for e in lst):
            return
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def _save_index(self) -> None:
        kept = [e.to_dict() for m in self.kept for e in self.kept[m]]
        for e in kept:
            e["path"] = Path(e["path"]).name
        doc = {"keep_n": self.keep_n, "kept": kept}
        tmp = self.folder / f".{self.INDEX}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.folder / self.INDEX)

    def best(self, metric: str) -> KeptCheckpoint | None:
        lst = self.kept.get(metric) or []
        return lst[0] if lst else None

    def summary(self) -> dict[str, list[dict[str, Any]]]:
        return {m: [e.to_dict() for e in lst] for m, lst in self.kept.items() if lst}


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)

"""Reading and validating pose sequences, dataset scanning and OpenGait split files.

Pose files
----------
A pose sequence is an array ``[T, 17, 3]`` of COCO-17 keypoints ``(x, y, confidence)`` in
source-image pixels (``[T, 17, 2]`` is accepted; the confidence becomes 1.0). Supported files:

- ``.pkl``: a pickled numpy array, as in the Scoliosis1K-Pose release. Pickles are untrusted
  input, so they are read with a restricted unpickler (:class:`_NumpyOnlyUnpickler`) that can
  rebuild plain numeric numpy arrays and nothing else: any other global (``os.system``,
  ``builtins.eval``, an ndarray subclass, ...) is refused with ``refusing to unpickle
  <module.name>`` before it is looked up, and object, structured, bool and complex dtypes are
  refused. The pickled array state is never handed to numpy's own ``__setstate__`` (not
  hardened against malformed input): it is validated and rebuilt with ``np.frombuffer``, and
  the opcode stream is checked for truncation and absurd lengths before unpickling. Arrays
  pickled by numpy 1.x (``numpy.core.*``) and 2.x (``numpy._core.*``) with protocols 2 to 5
  load, as do Python 2 numpy pickles. A top-level list or tuple of per-frame ``[17, 2|3]`` arrays is stacked
  along a new time axis (some pose-extraction scripts save frames that way; the release itself
  holds a single array).
- ``.npy``: ``numpy.load(..., allow_pickle=False)``.
- ``.npz``: exactly one array (any key), also without pickle.

Every problem raises :class:`PoseError` (a ``ValueError``) whose message starts with the file
path; corrupt or truncated files never surface as raw ``UnpicklingError``/``EOFError``.

Dataset layout
--------------
``<root>/<id>/<Label>/<view>/<view>.{pkl,npy,npz}``, e.g. ``00000/Positive/000_180/000_180.pkl``.
Ids are the folder names, kept as strings (``"00000"``). Label folders are matched without
regard to case (``Positive``, ``positive``, ``POSITIVE``); any other label folder is an error
naming its path. Hidden entries (``.name``) and plain files directly under ``<root>`` or
``<root>/<id>`` (e.g. split JSON files, a manifest) are ignored. When ``<view>/<view>.<ext>``
is absent but the view folder holds exactly one pose file, that file is used.

Splits
------
OpenGait split JSON ``{"TRAIN_SET": [ids], "TEST_SET": [ids]}`` (:func:`load_split`,
:class:`Split`). Validation carving (:func:`carve_validation`, :meth:`Split.carve_validation`)
is stratified by label and deterministic in its seed.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import pickletools
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconet._io import atomic_write_json, atomic_write_text
from sconet.classes import CLASSES

__all__ = [
    "CLASSES",
    "N_KEYPOINTS",
    "POSE_SUFFIXES",
    "PoseError",
    "SplitError",
    "SequenceRecord",
    "LoadResult",
    "Split",
    "SplitCheck",
    "validate_pose",
    "load_pose_file",
    "normalise_label",
    "scan_dataset",
    "load_sequences",
    "write_skip_report",
    "load_split",
    "carve_validation",
    "check_split",
    "labels_of",
]

N_KEYPOINTS = 17
"""COCO-17 keypoints per frame."""

POSE_SUFFIXES = (".pkl", ".npy", ".npz")
"""File types :func:`load_pose_file` reads, in the order tried by :func:`scan_dataset`."""


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


class PoseError(ValueError):
    """A pose file or dataset folder could not be used. ``str(err)`` starts with the path.

    ``path``: the offending file or folder (as given); ``reason``: the message without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep picklable (multiprocessing) despite the 2-argument __init__
        return (type(self), (self.path, self.reason))


class SplitError(ValueError):
    """A split file is malformed. ``str(err)`` starts with the file path (when there is one)."""


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate_pose(arr: Any, source: str | os.PathLike[str]) -> np.ndarray:
    """Check a pose array and return it as C-contiguous float32 ``[T, 17, 3]``.

    Requirements: a numpy array (or array-like) of a real numeric dtype (integers or floats;
    not bool, complex or object), shape ``[T, 17, 2]`` or ``[T, 17, 3]`` with ``T >= 1``, all
    values finite (also after conversion to float32). A ``[T, 17, 2]`` array gets a confidence
    column of 1.0. ``source`` names the file in the :class:`PoseError` messages.
    """
    if not isinstance(arr, np.ndarray):
        raise PoseError(source, f"expected a numpy array, got {type(arr).__name__}")
    if arr.dtype.hasobject or arr.dtype.kind not in "iuf":
        raise PoseError(source, f"expected a numeric (integer or float) array, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1] != N_KEYPOINTS or arr.shape[2] not in (2, 3):
        raise PoseError(
            source, f"expected shape [T, {N_KEYPOINTS}, 3] (or [T, {N_KEYPOINTS}, 2]), got {list(arr.shape)}"
        )
    if arr.shape[0] < 1:
        raise PoseError(source, "empty sequence (T = 0 frames)")
    out = np.empty((arr.shape[0], N_KEYPOINTS, 3), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        out[..., : arr.shape[2]] = arr
    if arr.shape[2] == 2:
        out[..., 2] = 1.0
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        n_bad = int((~finite).sum())
        orig_finite = bool(np.isfinite(arr).all()) if arr.dtype.kind == "f" else True
        what = "values too large for float32" if orig_finite else "non-finite values (NaN or inf)"
        raise PoseError(
            source,
            f"{n_bad} {what}, first at frame {int(bad[0])}, keypoint {int(bad[1])}, column {int(bad[2])}",
        )
    return out


# --------------------------------------------------------------------------------------------
# restricted unpickling
# --------------------------------------------------------------------------------------------
#
# numpy's own reconstruction (ndarray.__setstate__, dtype.__setstate__) is not hardened
# against malformed state: fuzzed pickles can crash the interpreter. So the allowed globals
# below never hand pickled state to numpy. They return small placeholder objects that record
# what the pickle asks for; the placeholders validate it (a plain numeric dtype, a shape whose
# size matches the raw bytes) and build the array with ``np.frombuffer`` + ``reshape``.

_NUMERIC_KINDS = "iuf"
_DTYPE_CODE = re.compile(r"^(?:[iu][1248]|f(?:2|4|8|12|16))$")


class _RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for something this reader does not allow (message starts "refusing")."""


class _NDArrayClass:
    """Stands for ``numpy.ndarray`` inside a pickle (only usable as ``_reconstruct``'s argument)."""


_NDARRAY = _NDArrayClass()


class _DTypeSpec:
    """Placeholder for ``numpy.dtype(code, align, copy)`` + ``__setstate__(state)``."""

    __slots__ = ("code", "byteorder", "_dtype")

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        if isinstance(code, bytes):
            code = code.decode("latin1")
        if not isinstance(code, str) or not code or len(code) > 8:
            raise pickle.UnpicklingError(f"invalid dtype code {code!r}")
        if not isinstance(align, (bool, int)) or not isinstance(copy, (bool, int)):
            raise pickle.UnpicklingError("invalid dtype arguments")
        if code[0] == "O":
            raise _RefusedPickle("refusing to unpickle an object-dtype array")
        if not _DTYPE_CODE.match(code):
            raise _RefusedPickle(f"refusing to unpickle a non-numeric array (dtype code {code!r})")
        self.code = code
        self.byteorder = "="
        self._dtype: np.dtype | None = None

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) < 2:
            raise pickle.UnpicklingError("invalid dtype state")
        byteorder = state[1]
        if isinstance(byteorder, bytes):
            byteorder = byteorder.decode("latin1")
        if byteorder not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"invalid dtype byte order {byteorder!r}")
        if any(x is not None for x in state[2:5]):
            raise _RefusedPickle("refusing to unpickle a structured or sub-array dtype")
        self.byteorder = byteorder
        self._dtype = None

    def dtype(self) -> np.dtype:
        if self._dtype is None:
            try:
                dt = np.dtype(self.code)
            except (TypeError, ValueError):
                raise pickle.UnpicklingError(f"invalid dtype code {self.code!r}") from None
            if dt.hasobject:
                raise _RefusedPickle("refusing to unpickle an object-dtype array")
            if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
                raise _RefusedPickle(f"refusing to unpickle a non-numeric array (dtype {dt})")
            if self.byteorder in "<>" and dt.itemsize > 1:
                dt = dt.newbyteorder(self.byteorder)
            self._dtype = dt
        return self._dtype


def _as_dtype(spec: Any) -> np.dtype:
    if not isinstance(spec, _DTypeSpec):
        raise pickle.UnpicklingError("array without a numpy dtype")
    return spec.dtype()


def _as_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > 32:
        raise pickle.UnpicklingError(f"invalid array shape {shape!r}")
    out = []
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise pickle.UnpicklingError(f"invalid array shape {shape!r}")
        out.append(n)
    return tuple(out)


def _as_bytes(raw: Any) -> bytes | bytearray | memoryview:
    if isinstance(raw, str):  # Python 2 pickles (read with encoding="latin1")
        return raw.encode("latin1")
    if isinstance(raw, pickle.PickleBuffer):
        return raw.raw()
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return raw
    raise pickle.UnpicklingError(f"array data of type {type(raw).__name__}")


def _build_array(raw: Any, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    data = _as_bytes(raw)
    n = math.prod(shape)
    if n * dtype.itemsize != len(data):
        raise pickle.UnpicklingError(
            f"array data has {len(data)} bytes, shape {list(shape)} of {dtype} needs {n * dtype.itemsize}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=n) if n else np.empty(0, dtype=dtype)
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="C")


class _ArraySpec:
    """Placeholder returned by ``_reconstruct``; ``__setstate__`` builds the array."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, is_fortran, rawdata) or, older, (shape, dtype, is_fortran, rawdata)
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("invalid array state")
        if len(state) == 5:
            state = state[1:]
        shape, spec, fortran, raw = state
        if isinstance(raw, list):
            raise _RefusedPickle("refusing to unpickle an object-dtype array")
        self.array = _build_array(raw, _as_dtype(spec), _as_shape(shape), bool(fortran))


def _safe_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> _ArraySpec:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` -> placeholder."""
    if cls is not _NDARRAY:
        raise _RefusedPickle("refusing to reconstruct anything but a plain numpy.ndarray")
    return _ArraySpec()


def _safe_frombuffer(buf: Any, spec: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`` (protocol 5)."""
    if order not in ("C", "F", "A", "K"):
        raise pickle.UnpicklingError(f"invalid array order {order!r}")
    return _build_array(buf, _as_dtype(spec), _as_shape(shape), order == "F")


def _safe_scalar(spec: Any, raw: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` for numeric dtypes only."""
    dt = _as_dtype(spec)
    if raw is None:
        raise pickle.UnpicklingError("scalar without data")
    return _build_array(raw, dt, (), False)[()]


def _safe_codecs_encode(obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as used by protocol 2 for ``bytes``: ``encode(str, 'latin1')`` only."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _RefusedPickle("refusing _codecs.encode other than (str, 'latin1')")
    return obj.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTypeSpec,
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _safe_codecs_encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds plain numeric numpy arrays (and plain containers) and nothing
    else; see the comment above :class:`_DTypeSpec`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedPickle(f"refusing to unpickle {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedPickle("refusing to unpickle persistent ids")


def _finish(obj: Any, depth: int = 0) -> Any:
    """Replace placeholders by arrays (top level and one level of list/tuple)."""
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise pickle.UnpicklingError("array without data")
        return obj.array
    if isinstance(obj, (_DTypeSpec, _NDArrayClass)):
        raise pickle.UnpicklingError("a bare numpy dtype/class, not an array")
    if depth == 0 and isinstance(obj, (list, tuple)):
        return type(obj)(_finish(x, 1) for x in obj)
    return obj


def _check_opcodes(data: bytes) -> None:
    """Walk the opcode stream without building anything (pure Python, no allocation beyond the
    data present): truncated data and absurd declared lengths fail here, before the C
    unpickler would try to allocate them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. odd escapes in protocol-0 strings
            for _ in pickletools.genops(data):
                pass
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt stream
        raise pickle.UnpicklingError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _clean(text: str, limit: int = 300) -> str:
    """Escape control characters (messages quote bytes from untrusted files) and cap the length."""
    out = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _load_pickle(path: Path, data: bytes) -> Any:
    try:
        _check_opcodes(data)
        return _finish(_NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load())
    except _RefusedPickle as exc:
        raise PoseError(path, _clean(str(exc))) from None
    except EOFError:
        raise PoseError(path, "truncated pickle (unexpected end of file)") from None
    except pickle.UnpicklingError as exc:
        raise PoseError(path, _clean(f"corrupt or truncated pickle ({exc})")) from None
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a corrupt file
        raise PoseError(path, _clean(f"corrupt pickle ({type(exc).__name__}: {exc})")) from None


def _stack_frames(obj: list | tuple, path: Path) -> np.ndarray:
    if not obj:
        raise PoseError(path, "empty sequence (the pickle holds an empty list)")
    frames = []
    for i, f in enumerate(obj):
        if not isinstance(f, np.ndarray):
            raise PoseError(path, f"frame {i} of the pickled list is a {type(f).__name__}, not a numpy array")
        if f.ndim != 2 or f.shape[0] != N_KEYPOINTS or f.shape[1] not in (2, 3):
            raise PoseError(
                path, f"frame {i} of the pickled list has shape {list(f.shape)}, expected [{N_KEYPOINTS}, 3]"
            )
        frames.append(f)
    if len({f.shape for f in frames}) != 1:
        raise PoseError(path, "the pickled frames do not all have the same shape")
    if len({f.dtype for f in frames}) != 1:
        raise PoseError(path, "the pickled frames do not all have the same dtype")
    return np.stack(frames)


def load_pose_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one pose file (``.pkl``, ``.npy`` or ``.npz``) -> validated float32 ``[T, 17, 3]``.

    Raises :class:`PoseError` (message starting with the path) for unreadable, corrupt,
    refused or invalid content.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in POSE_SUFFIXES:
        raise PoseError(path, f"unsupported pose file type {path.suffix!r} (expected .pkl, .npy or .npz)")
    try:
        if suffix == ".pkl":
            data = path.read_bytes()
            obj = _load_pickle(path, data)
            if isinstance(obj, (list, tuple)):
                obj = _stack_frames(obj, path)
            elif not isinstance(obj, np.ndarray):
                raise PoseError(path, f"the pickle holds a {type(obj).__name__}, expected a numpy array")
            arr = obj
        elif suffix == ".npy":
            arr = _load_npy(path)
        else:
            arr = _load_npz(path)
    except PoseError:
        raise
    except FileNotFoundError:
        raise PoseError(path, "file not found") from None
    except IsADirectoryError:
        raise PoseError(path, "is a folder, not a pose file") from None
    except OSError as exc:
        raise PoseError(path, f"cannot read ({exc.strerror or exc})") from None
    return validate_pose(arr, path)


def _numpy_load_error(path: Path, exc: Exception, what: str, kind: str) -> PoseError:
    """The :class:`PoseError` for a failed ``np.load`` (object arrays are refused, not loaded)."""
    msg = str(exc)
    if "allow_pickle" in msg or "Object arrays" in msg:
        return PoseError(path, f"refusing an object-dtype {what} (needs pickle)")
    return PoseError(path, _clean(f"corrupt or truncated {kind} ({type(exc).__name__}: {msg})"))


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a corrupt file
        raise _numpy_load_error(path, exc, ".npy array", ".npy") from None
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load of .npy gives arrays
        raise PoseError(path, f"expected a numpy array, got {type(arr).__name__}")
    return arr


def _load_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if len(keys) != 1:
                raise PoseError(path, f"expected exactly one array in the .npz, found {len(keys)}: {keys}")
            return z[keys[0]]
    except PoseError:
        raise
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a corrupt file
        raise _numpy_load_error(path, exc, "array in the .npz", ".npz") from None


# --------------------------------------------------------------------------------------------
# dataset scanning and loading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence of a dataset: id (folder name), lower-case label, view, pose file path."""

    id: str
    label: str
    view: str
    path: Path

    def __post_init__(self) -> None:
        if self.label not in CLASSES:
            raise ValueError(f"label {self.label!r} is not one of {CLASSES}")
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "path", Path(self.path))


def normalise_label(name: str, path: str | os.PathLike[str] | None = None) -> str:
    """``"Positive"`` -> ``"positive"``; anything not in :data:`CLASSES` raises :class:`PoseError`."""
    label = str(name).strip().lower()
    if label not in CLASSES:
        raise PoseError(
            path if path is not None else name,
            f"unknown label folder {name!r} (expected one of {', '.join(CLASSES)}, any letter case)",
        )
    return label


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except NotADirectoryError:
        return []
    except OSError as exc:
        raise PoseError(folder, f"cannot list folder ({exc.strerror or exc})") from None
    return sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir())


def _pose_file_in(view_dir: Path) -> Path:
    for suffix in POSE_SUFFIXES:
        p = view_dir / f"{view_dir.name}{suffix}"
        if p.is_file():
            return p
    try:
        candidates = sorted(
            p
            for p in view_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in POSE_SUFFIXES
        )
    except OSError as exc:
        raise PoseError(view_dir, f"cannot list folder ({exc.strerror or exc})") from None
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise PoseError(view_dir, f"no pose file (expected {view_dir.name}.pkl, .npy or .npz)")
    raise PoseError(
        view_dir,
        f"{len(candidates)} pose files and none named {view_dir.name}.pkl/.npy/.npz: "
        f"{[c.name for c in candidates]}",
    )


def scan_dataset(root: str | os.PathLike[str]) -> list[SequenceRecord]:
    """List the sequences of a dataset in the Scoliosis1K layout, sorted by (id, view).

    ``<root>/<id>/<Label>/<view>/<view>.{pkl,npy,npz}``. Files are not opened (use
    :func:`load_sequences`). Raises :class:`PoseError` for a missing root, an unknown label
    folder, a view folder without a pose file, or the same (id, view) under two labels.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PoseError(root, "pose dataset folder not found")
    records: list[SequenceRecord] = []
    seen: dict[tuple[str, str], Path] = {}
    for id_dir in _visible_dirs(root):
        for label_dir in _visible_dirs(id_dir):
            label = normalise_label(label_dir.name, label_dir)
            for view_dir in _visible_dirs(label_dir):
                pose_file = _pose_file_in(view_dir)
                key = (id_dir.name, view_dir.name)
                if key in seen:
                    raise PoseError(
                        view_dir,
                        f"sequence {key[0]}/{key[1]} appears under two labels (also {seen[key]})",
                    )
                seen[key] = view_dir
                records.append(SequenceRecord(id_dir.name, label, view_dir.name, pose_file))
    records.sort(key=lambda r: (r.id, r.view))
    return records


@dataclass
class LoadResult:
    """Output of :func:`load_sequences`: the loaded ``records`` and their ``poses`` (same order,
    float32 ``[T, 17, 3]`` each) and the ``skipped`` files as ``(path, reason)`` strings."""

    records: list[SequenceRecord]
    poses: list[np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def load_sequences(records: Iterable[SequenceRecord], skip_bad: bool = False) -> LoadResult:
    """Load every record's pose file (:func:`load_pose_file`), keeping the records' order.

    ``skip_bad=False``: the first bad file raises its :class:`PoseError`. ``skip_bad=True``:
    bad files are left out and listed in ``skipped`` as ``(path, reason)``; see
    :func:`write_skip_report`.
    """
    out = LoadResult(records=[], poses=[], skipped=[])
    for rec in records:
        try:
            pose = load_pose_file(rec.path)
        except PoseError as exc:
            if not skip_bad:
                raise
            out.skipped.append((str(rec.path), exc.reason))
            continue
        out.records.append(rec)
        out.poses.append(pose)
    return out


def write_skip_report(skipped: Sequence[tuple[Any, Any]], path: str | os.PathLike[str]) -> Path:
    """Write the files left out by ``skip_bad`` to ``path`` (atomically).

    ``.json``: ``{"count": n, "skipped": [{"path": ..., "reason": ...}, ...]}``; any other
    suffix: plain text, a header line then one ``path: reason`` line per file.
    """
    path = Path(path)
    items = [(str(p), str(r)) for p, r in skipped]
    if path.suffix.lower() == ".json":
        doc = {"count": len(items), "skipped": [{"path": p, "reason": r} for p, r in items]}
        return atomic_write_json(path, doc)
    lines = [f"{len(items)} pose file(s) skipped"]
    lines += [f"{p}: {r}" for p, r in items]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def labels_of(records: Iterable[SequenceRecord]) -> dict[str, str]:
    """``{id: label}`` of records (an id with several views must have one label)."""
    out: dict[str, str] = {}
    for r in records:
        prev = out.setdefault(r.id, r.label)
        if prev != r.label:
            raise PoseError(r.path, f"id {r.id} has two labels: {prev} and {r.label}")
    return out


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def _labels_mapping(ids: Sequence[str], labels: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(labels, Mapping):
        mapping = {str(k): str(v).lower() for k, v in labels.items()}
    else:
        if len(labels) != len(ids):
            raise ValueError(f"got {len(labels)} labels for {len(ids)} ids")
        mapping = {str(i): str(lab).lower() for i, lab in zip(ids, labels)}
    bad = sorted({v for v in mapping.values() if v not in CLASSES})
    if bad:
        raise ValueError(f"unknown label(s) {bad}: expected {CLASSES}")
    return mapping


def carve_validation(
    ids: Iterable[str],
    labels: Mapping[str, str] | Sequence[str],
    fraction: float = 0.1,
    seed: int = 0,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``ids`` into ``(train_ids, val_ids)``, stratified by label, deterministic in ``seed``.

    ``labels``: ``{id: label}`` (must cover every id) or a sequence aligned with ``ids``.
    Per class with ``n`` ids, ``round(fraction * n)`` go to validation, at least one when
    ``fraction > 0`` and ``n >= 2``, and never all of them. Both outputs keep the input order.
    ``fraction = 0`` gives no validation ids.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("carve_validation: duplicate ids")
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"carve_validation: fraction must be in [0, 1), got {fraction}")
    mapping = _labels_mapping(ids, labels)
    missing = [i for i in ids if i not in mapping]
    if missing:
        raise ValueError(f"carve_validation: no label for {len(missing)} id(s), e.g. {missing[:5]}")
    rng = np.random.default_rng([int(seed), 0x5CA1])
    val: set[str] = set()
    for cls in CLASSES:
        members = sorted(i for i in ids if mapping[i] == cls)
        n = len(members)
        if n == 0 or fraction == 0:
            continue
        k = int(math.floor(fraction * n + 0.5))
        if n >= 2:
            k = min(max(k, 1), n - 1)
        else:
            k = 0
        pick = rng.permutation(n)[:k]
        val.update(members[j] for j in pick)
    return tuple(i for i in ids if i not in val), tuple(i for i in ids if i in val)


@dataclass(frozen=True)
class Split:
    """A train/test partition of sequence ids (OpenGait split file)."""

    name: str
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_ids", tuple(str(i) for i in self.train_ids))
        object.__setattr__(self, "test_ids", tuple(str(i) for i in self.test_ids))
        both = set(self.train_ids) & set(self.test_ids)
        if both:
            raise SplitError(
                f"split {self.name!r}: {len(both)} id(s) in both TRAIN_SET and TEST_SET, e.g. {sorted(both)[:5]}"
            )

    @property
    def ids(self) -> tuple[str, ...]:
        """Training then test ids."""
        return self.train_ids + self.test_ids

    def to_json(self) -> str:
        """OpenGait JSON text ``{"TRAIN_SET": [...], "TEST_SET": [...]}``."""
        return json.dumps({"TRAIN_SET": list(self.train_ids), "TEST_SET": list(self.test_ids)}, indent=2) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically)."""
        return atomic_write_text(path, self.to_json())

    def carve_validation(
        self, labels: Mapping[str, str] | Sequence[str], fraction: float = 0.1, seed: int = 0
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(train_ids, val_ids)`` carved from :attr:`train_ids`, stratified by label.

        ``labels``: ``{id: label}`` covering the training ids (e.g. :func:`labels_of` of the
        scanned records) or a sequence aligned with :attr:`train_ids`. See
        :func:`carve_validation`.
        """
        return carve_validation(self.train_ids, labels, fraction, seed)


def _check_id_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SplitError(f"{path}: {key} must be a list of id strings, got {type(value).__name__}")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise SplitError(f"{path}: {key}[{i}] must be a string id, got {type(v).__name__} {v!r}")
        if not v.strip():
            raise SplitError(f"{path}: {key}[{i}] is an empty id")
        out.append(v)
    dup = sorted({v for v in out if out.count(v) > 1}) if len(set(out)) != len(out) else []
    if dup:
        raise SplitError(f"{path}: {key} lists id(s) more than once: {dup[:5]}")
    return tuple(out)


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read an OpenGait split JSON ``{"TRAIN_SET": [...], "TEST_SET": [...]}``.

    Ids must be strings (``"00000"``), unique within each list, and no id may be in both
    lists. The split's name is the file stem (``Scoliosis1K_112``). Errors are
    :class:`SplitError` naming the file.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SplitError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path}: cannot read split file ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SplitError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SplitError(f"{path}: expected a JSON object with TRAIN_SET and TEST_SET, got {type(doc).__name__}")
    missing = [k for k in ("TRAIN_SET", "TEST_SET") if k not in doc]
    if missing:
        raise SplitError(f"{path}: missing key(s) {missing} (expected TRAIN_SET and TEST_SET)")
    train = _check_id_list(doc["TRAIN_SET"], "TRAIN_SET", path)
    test = _check_id_list(doc["TEST_SET"], "TEST_SET", path)
    both = sorted(set(train) & set(test))
    if both:
        raise SplitError(f"{path}: {len(both)} id(s) in both TRAIN_SET and TEST_SET, e.g. {both[:5]}")
    return Split(path.stem, train, test)


@dataclass(frozen=True)
class SplitCheck:
    """Result of :func:`check_split`: split ids absent from the dataset, and dataset ids the
    split does not mention."""

    missing_train: tuple[str, ...]
    missing_test: tuple[str, ...]
    unused: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every split id is in the dataset."""
        return not self.missing_train and not self.missing_test

    def messages(self, name: str = "split") -> list[str]:
        """Human-readable problems (empty when everything matches)."""
        out = []
        for what, ids in (("training", self.missing_train), ("test", self.missing_test)):
            if ids:
                out.append(f"{len(ids)} {what} id(s) of {name} are not in the dataset, e.g. {list(ids[:5])}")
        if self.unused:
            out.append(f"{len(self.unused)} dataset id(s) are in neither set of {name}, e.g. {list(self.unused[:5])}")
        return out


def check_split(split: Split, records: Iterable[SequenceRecord] | Iterable[str]) -> SplitCheck:
    """Compare a split with a dataset (records from :func:`scan_dataset`, or plain ids)."""
    present = {r.id if isinstance(r, SequenceRecord) else str(r) for r in records}
    in_split = set(split.train_ids) | set(split.test_ids)
    return SplitCheck(
        missing_train=tuple(i for i in split.train_ids if i not in present),
        missing_test=tuple(i for i in split.test_ids if i not in present),
        unused=tuple(sorted(present - in_split)),
    )

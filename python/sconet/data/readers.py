"""Reading and validating one pose sequence file (``.pkl``, ``.npy``, ``.npz``) into float32 ``[T, 17, 3]``.

A pose sequence is an array ``[T, 17, 3]`` of COCO-17 keypoints ``(x, y, confidence)`` in
source-image pixels (``[T, 17, 2]`` is accepted; the confidence becomes 1.0). ``.pkl`` files are
untrusted input and go through :mod:`sconet.data.safe_pickle`; a top-level list or tuple of
per-frame ``[17, 2|3]`` arrays is stacked along a new time axis. ``.npy``/``.npz`` (exactly one
array) are read without pickle. Every problem raises :class:`PoseError`, whose message starts
with the file path.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sconet.data.safe_pickle import _check_opcodes, _clean, _finish, _NumpyOnlyUnpickler, _RefusedPickle

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

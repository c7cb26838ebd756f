"""A restricted unpickler that rebuilds plain numeric numpy arrays and nothing else.

Any other global (``os.system``, ``builtins.eval``, an ndarray subclass, ...) is refused before it
is looked up, object/structured/bool/complex dtypes are refused, and the pickled array state is
never handed to numpy's own ``__setstate__``: it is validated and rebuilt with ``np.frombuffer``.
The opcode stream is checked for truncation and absurd lengths first. numpy 1.x and 2.x pickles
(protocols 2-5) and Python 2 numpy pickles load.
"""

from __future__ import annotations

import math
import pickle
import pickletools
import re
import warnings
from typing import Any

import numpy as np

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
            if self.byteorder in ("<", ">") and dt.itemsize > 1:
                dt = dt.newbyteorder("<" if self.byteorder == "<" else ">")
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

"""OpenGait heatmap pickles: reading them safely, writing them as OpenGait's pretreatment does.

OpenGait's ``datasets/pretreatment_heatmap.py`` writes one ``pickle.dump`` of a uint8 numpy array
``[T, 2, 64, 64]`` (limb map, joint map) per sequence, under ``<id>/<label>/<view>/<view>.pkl``.

Reading goes through :mod:`sconet.data.safe_pickle` (plain numeric arrays only, nothing else is
ever constructed). Writing reproduces the bytes that OpenGait's environment writes: a
:class:`PickleFlavour` names the pickle protocol and the numpy module the array's rebuild function
is referenced from (``numpy.core`` under numpy 1.x, ``numpy._core`` under numpy 2.x; numpy 1.26
and 2.x load both, older numpy only ``numpy.core``). :func:`pickle_flavour` reads the flavour off
an existing file, so a tree imported from OpenGait is exported back byte for byte.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sconet.data.readers import PoseError
from sconet.data.safe_pickle import _check_opcodes, _clean, _finish, _NumpyOnlyUnpickler, _RefusedPickle

HEATMAP_FRAME_SHAPE = (2, 64, 64)
"""One frame of an OpenGait skeleton heatmap: limb map, joint map, 64 x 64."""

_NUMPY_PACKAGES = ("numpy.core", "numpy._core")


class HeatmapError(PoseError):
    """A heatmap file that cannot be used; ``str(err)`` starts with the path."""


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def load_heatmap_bytes(data: bytes, path: str | os.PathLike[str]) -> np.ndarray:
    """The uint8 ``[T, 2, 64, 64]`` array pickled in ``data`` (``path`` names it in errors)."""
    try:
        _check_opcodes(data)
        obj = _finish(_NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load())
    except _RefusedPickle as exc:
        raise HeatmapError(path, _clean(str(exc))) from None
    except EOFError:
        raise HeatmapError(path, "truncated pickle (unexpected end of file)") from None
    except Exception as exc:  # noqa: BLE001 - untrusted input: any failure is a corrupt file
        raise HeatmapError(path, _clean(f"corrupt pickle ({type(exc).__name__}: {exc})")) from None
    if not isinstance(obj, np.ndarray):
        raise HeatmapError(path, f"the pickle holds a {type(obj).__name__}, expected a numpy array")
    if obj.dtype != np.uint8:
        raise HeatmapError(path, f"expected a uint8 heatmap array, got dtype {obj.dtype}")
    if obj.ndim != 4 or tuple(obj.shape[1:]) != HEATMAP_FRAME_SHAPE:
        raise HeatmapError(path, f"expected shape [T, 2, 64, 64], got {list(obj.shape)}")
    if obj.shape[0] < 1:
        raise HeatmapError(path, "empty sequence (T = 0 frames)")
    return np.ascontiguousarray(obj)


def load_heatmap_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one OpenGait heatmap pickle -> uint8 ``[T, 2, 64, 64]`` (:class:`HeatmapError` otherwise)."""
    path = Path(path)
    if path.suffix.lower() != ".pkl":
        raise HeatmapError(
            path, f"not a pickle ({path.suffix or 'no suffix'}); OpenGait heatmaps are .pkl files"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HeatmapError(path, "file not found") from None
    except IsADirectoryError:
        raise HeatmapError(path, "is a folder, not a heatmap file") from None
    except OSError as exc:
        raise HeatmapError(path, f"cannot read ({exc.strerror or exc})") from None
    return load_heatmap_bytes(data, path)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PickleFlavour:
    """How a numpy array is pickled: ``protocol`` (2..5) and the numpy package (``numpy.core`` or
    ``numpy._core``) its rebuild function is referenced from. The default is what OpenGait's
    pretreatment writes under numpy 1.x and Python 3.8+ (``pickle.dump`` defaults)."""

    protocol: int = 4
    numpy_module: str = "numpy.core"

    def __post_init__(self) -> None:
        if self.protocol not in (2, 3, 4, 5):
            raise ValueError(f"pickle protocol must be 2..5, got {self.protocol!r}")
        if self.numpy_module not in _NUMPY_PACKAGES:
            raise ValueError(f"numpy module must be one of {_NUMPY_PACKAGES}, got {self.numpy_module!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "numpy_module": self.numpy_module}

    @classmethod
    def from_dict(cls, doc: Any) -> PickleFlavour:
        if not isinstance(doc, dict):
            return cls()
        return cls(int(doc.get("protocol", 4)), str(doc.get("numpy_module", "numpy.core")))


# the pure-Python pickler (its save_global can be overridden; the C one's cannot)
_PurePickler: Any = getattr(pickle, "_Pickler")  # noqa: B009 - not in the type stubs
_whichmodule: Any = getattr(pickle, "whichmodule")  # noqa: B009


class _FlavouredPickler(_PurePickler):
    """The pure-Python pickler (its output equals the C pickler's for these objects) with the
    installed numpy's package name of ``_reconstruct`` / ``_frombuffer`` replaced by the flavour's."""

    def __init__(self, file: io.BytesIO, flavour: PickleFlavour) -> None:
        super().__init__(file, protocol=flavour.protocol)
        self._numpy_module = flavour.numpy_module

    def save_global(self, obj: Any, name: str | None = None) -> None:
        name = name or getattr(obj, "__qualname__", None) or obj.__name__
        module = _whichmodule(obj, name)
        for package in _NUMPY_PACKAGES:
            if module.startswith(package + "."):
                module = self._numpy_module + module[len(package) :]
                if self.proto >= 4:
                    self.save(module)
                    self.save(name)
                    self.write(pickle.STACK_GLOBAL)
                else:
                    self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")
                self.memoize(obj)
                return
        super().save_global(obj, name)


def dumps_heatmap(maps: np.ndarray, flavour: PickleFlavour | None = None) -> bytes:
    """The pickle bytes of a heatmap array as ``pickle.dump`` writes them in the flavour's
    environment (a plain C-contiguous uint8 ndarray, nothing else)."""
    arr = np.ascontiguousarray(maps, dtype=np.uint8)
    buf = io.BytesIO()
    _FlavouredPickler(buf, flavour or PickleFlavour()).dump(arr)
    return buf.getvalue()


def pickle_flavour(data: bytes) -> PickleFlavour | None:
    """The flavour of a pickled numpy array (protocol and numpy package), or ``None`` when the
    bytes are not a pickle of that kind (e.g. written by something other than ``pickle.dump``)."""
    protocol = None
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "PROTO" and isinstance(arg, int):
                protocol = arg
            elif op.name == "GLOBAL":
                module = str(arg).split(" ", 1)[0]
                return _flavour(protocol, module)
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(arg))
            elif op.name == "STACK_GLOBAL":
                return _flavour(protocol, strings[-2] if len(strings) >= 2 else "")
    except Exception:  # noqa: BLE001 - not a readable pickle: no flavour
        return None
    return None


def _flavour(protocol: int | None, module: str) -> PickleFlavour | None:
    for package in _NUMPY_PACKAGES:
        if module.startswith(package + ".") and protocol in (2, 3, 4, 5):
            return PickleFlavour(protocol, package)
    return None

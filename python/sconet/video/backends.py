"""The pose-backend interface and its registry.

A backend turns one RGB frame into one COCO-17 pose ``[17, 3]`` (``x, y`` in the frame's
pixels, a confidence) or ``None`` when it finds no person. Backends keep state between frames
(tracking), so :meth:`PoseBackend.reset` is called at the start of every video.

Backends register themselves with :func:`register_backend`, each with a typed settings
dataclass; :func:`create_backend` builds one from a name and plain option values (the CLI's
``--backend`` and ``--backend-option``), checking every option against the dataclass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import numpy as np

from sconet.data import describe_pose_source

__all__ = [
    "BackendError",
    "BackendSpec",
    "PoseBackend",
    "backend_names",
    "create_backend",
    "describe_pose_source",
    "get_backend_spec",
    "register_backend",
    "sha256_file",
]


class BackendError(ValueError):
    """A backend cannot be created: unknown name, bad option, missing package or model file."""


class PoseBackend(ABC):
    """One pose estimator. Subclasses set :attr:`name` and take their settings dataclass."""

    name: ClassVar[str] = ""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @abstractmethod
    def source(self) -> dict[str, Any]:
        """The pose source: ``{"backend", "model", "model_sha256", "version", "settings",
        "keypoints", "confidence"}`` (plain JSON values), recorded beside every pose file."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the previous frames (called before the first frame of every video)."""

    @abstractmethod
    def estimate(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
        """Pose of the person in ``rgb`` (uint8 ``[H, W, 3]``, C-contiguous), or ``None``.

        ``box`` is where to look ``(x0, y0, x1, y1)`` in ``rgb``'s pixels (the region of
        interest, or the whole frame). Returns float32 ``[17, 3]`` in ``rgb``'s pixels.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the model (the backend is unusable afterwards)."""

    def __enter__(self) -> PoseBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: its class, its settings dataclass, the module that defines it
    and the pip extra that installs what it needs."""

    name: str
    module: str
    summary: str
    extra: str
    settings_cls: type | None = None
    backend_cls: type[PoseBackend] | None = None


# Backends are declared here by module so that the registry lists them without importing their
# (heavy, optional) packages; the module registers the class when it is first needed.
_REGISTRY: dict[str, BackendSpec] = {
    "blazepose": BackendSpec(
        "blazepose",
        "sconet.video.blazepose",
        "MediaPipe BlazePose (full, bundled in mediapipe 0.10.21; runs offline)",
        "video",
    ),
    "onnx": BackendSpec(
        "onnx",
        "sconet.video.onnx_backend",
        "a local top-down ONNX pose model (heatmap or SimCC output, e.g. ViTPose, RTMPose)",
        "video",
    ),
}


def register_backend(name: str, settings_cls: type) -> Callable[[type[PoseBackend]], type[PoseBackend]]:
    """Class decorator: register ``cls`` as backend ``name`` taking ``settings_cls(**options)``."""

    def deco(cls: type[PoseBackend]) -> type[PoseBackend]:
        if not dataclasses.is_dataclass(settings_cls):
            raise TypeError(f"backend {name!r}: settings must be a dataclass")
        old = _REGISTRY.get(name)
        _REGISTRY[name] = BackendSpec(
            name,
            cls.__module__,
            old.summary if old else (cls.__doc__ or "").strip().split("\n")[0],
            old.extra if old else "video",
            settings_cls,
            cls,
        )
        cls.name = name
        return cls

    return deco


def backend_names() -> list[str]:
    """Names of the registered backends."""
    return sorted(_REGISTRY)


def get_backend_spec(name: str) -> BackendSpec:
    """The loaded :class:`BackendSpec` of ``name`` (imports its module)."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise BackendError(f"unknown pose backend {name!r} (known: {', '.join(backend_names())})")
    if spec.backend_cls is None:
        importlib.import_module(spec.module)
        spec = _REGISTRY[name]
        if spec.backend_cls is None:  # pragma: no cover - a module that forgot to register
            raise BackendError(f"pose backend {name!r}: {spec.module} did not register it")
    return spec


def _coerce(name: str, key: str, value: Any, kind: Any) -> Any:
    """Plain option values (CLI strings included) -> the settings field's type."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if value is None:
        return None
    if args and typing.get_origin(kind) is not tuple:  # X | None
        kind = args[0]
    text = str(value).strip()
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            flag = {
                "1": True,
                "true": True,
                "yes": True,
                "on": True,
                "0": False,
                "false": False,
                "no": False,
                "off": False,
            }.get(text.lower())
            if flag is None:
                raise ValueError(text)
            return flag
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(text)
            return int(text) if isinstance(value, str) else int(value)
        if kind is float:
            return float(value)
        if kind is Path:
            return Path(text).expanduser()
        if typing.get_origin(kind) is tuple:
            items = text.split(",") if isinstance(value, str) else list(value)
            return tuple(float(v) for v in items)
    except (TypeError, ValueError):
        what = getattr(kind, "__name__", str(kind))
        raise BackendError(f"pose backend {name!r}: option {key}={value!r} is not a valid {what}") from None
    return value


def create_backend(name: str, options: Mapping[str, Any] | None = None) -> PoseBackend:
    """A ready backend ``name`` with ``options`` (field names of its settings dataclass).

    Unknown options, values of the wrong type, a missing package or model file raise
    :class:`BackendError` with a one-line message.
    """
    spec = get_backend_spec(name)
    assert spec.settings_cls is not None and spec.backend_cls is not None
    fields = {f.name: f for f in dataclasses.fields(spec.settings_cls)}
    hints = get_type_hints(spec.settings_cls)
    options = dict(options or {})
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise BackendError(
            f"pose backend {name!r} has no option {', '.join(unknown)} (options: {', '.join(fields)})"
        )
    values = {k: _coerce(name, k, v, hints[k]) for k, v in options.items()}
    try:
        settings = spec.settings_cls(**values)
    except TypeError as exc:
        raise BackendError(f"pose backend {name!r}: {exc}") from None
    return spec.backend_cls(settings)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as plain JSON values (paths as strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

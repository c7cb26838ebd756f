"""sconet: scoliosis screening from gait.

Stages, one module each: :mod:`sconet.poses` (read and validate pose sequences),
:mod:`sconet.synth` (built-in synthetic Scoliosis1K), :mod:`sconet.render` (Rust skeleton-map
renderer and postural asymmetry vectors), :mod:`sconet.cache` (Zarr caches),
:mod:`sconet.stream` (training batches), :mod:`sconet.model`, :mod:`sconet.losses`,
:mod:`sconet.train` and :mod:`sconet.evaluate`.

Heavy modules (torch) are imported lazily so that data commands start fast.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("sconet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

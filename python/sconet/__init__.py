"""sconet: scoliosis screening from gait.

Stages, one module each: :mod:`sconet.data` (read and validate pose sequences),
:mod:`sconet.data.synth` (built-in synthetic Scoliosis1K), :mod:`sconet.render` (Rust skeleton-map
renderer and postural asymmetry vectors), :mod:`sconet.cache` (Zarr caches),
:mod:`sconet.stream` (training batches), :mod:`sconet.models`, :mod:`sconet.models`,
:mod:`sconet.training` and :mod:`sconet.evaluation`.

Heavy modules (torch) are imported lazily so that data commands start fast.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("sconet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

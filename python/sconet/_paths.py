"""Where sconet keeps generated data (no heavy imports; safe to import anywhere)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root"]

CACHE_ENV = "SCONET_CACHE"
"""Environment variable naming the cache root."""


def cache_root() -> Path:
    """The cache root: ``$SCONET_CACHE`` if set (and not empty), else ``./data_cache``.

    Returned as an absolute path (relative values are taken from the current directory at call
    time). The folder is not created here.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    root = Path(value).expanduser() if value else Path("data_cache")
    return root if root.is_absolute() else Path.cwd() / root

"""Shared pytest fixtures for the sconet suite.

Isolation
    ``_isolated_cache_root`` (session, autouse): ``$SCONET_CACHE`` points at a fresh session
    temporary folder for the whole run, so no test reads or writes the repository's
    ``data_cache/`` (and :func:`sconet.data.synth.ensure_synthetic` would generate there);
    ``$SCONET_LEDGER`` points into it too, so no test writes the repository's run ledger.
    :func:`cache_root_dir` returns that folder.

Small synthetic dataset (built once per session; treat as READ-ONLY)
    ``small_synth_config``  :class:`sconet.data.synth.SynthConfig` with 30 sequences x 40 frames, seed 0.
    ``small_dataset``       root of that dataset in the Scoliosis1K release layout
                            (``<root>/<id>/<Label>/<view>/<view>.pkl``) with the split file
                            ``Scoliosis1K_112.json``.
    ``small_split``         path of that split JSON.
    ``small_render_config`` the default :class:`sconet.render.RenderConfig` (body-only,
                            sigma limb 15 / joint 8, square, shared, linear imputation).
    ``small_cache``         :class:`sconet.cache.CacheResult` of building ``small_dataset`` with
                            ``small_render_config`` at its default store path (so
                            ``find_cache(small_render_config, poses=small_dataset)`` finds it).
    ``small_store``         :class:`sconet.cache.CacheStore` opened on it (1,200 frames in RAM
                            via ``small_store.load_frames()``).

Per test
    ``store_copy``          a private copy of the small store under ``tmp_path`` (damage it freely).
    ``dataset_copy``        a private copy of the small dataset under ``tmp_path`` (edit freely).
    ``sconet_cli``          run the installed ``sconet`` console script in a subprocess:
                            ``sconet_cli("cache", "--poses", str(p))`` -> CompletedProcess
                            (text, captured; same ``$SCONET_CACHE``; ``check=False``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SMALL_SEQUENCES = 30
SMALL_FRAMES = 40


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sconet_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCONET_CACHE", str(root))
        mp.setenv("SCONET_LEDGER", str(root / "ledger.sqlite"))  # never the repository's runs/
        yield root


@pytest.fixture(scope="session")
def cache_root_dir(_isolated_cache_root: Path) -> Path:
    """The session's ``$SCONET_CACHE`` folder."""
    return _isolated_cache_root


@pytest.fixture(scope="session")
def small_synth_config():
    from sconet.data.synth import SynthConfig

    return SynthConfig(n_sequences=SMALL_SEQUENCES, frames=SMALL_FRAMES, seed=0)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, small_synth_config) -> Path:
    from sconet.data.synth import write_synthetic

    out = tmp_path_factory.mktemp("small_synth") / "poses"
    return Path(write_synthetic(out, small_synth_config, ratios=("1:1:2",)))


@pytest.fixture(scope="session")
def small_split(small_dataset: Path) -> Path:
    return small_dataset / "Scoliosis1K_112.json"


@pytest.fixture(scope="session")
def small_render_config():
    from sconet.render import RenderConfig

    return RenderConfig()


@pytest.fixture(scope="session")
def small_cache(_isolated_cache_root: Path, small_dataset: Path, small_render_config):
    from sconet.cache import CacheConfig, build_cache

    return build_cache(CacheConfig(poses=small_dataset, render=small_render_config))


@pytest.fixture(scope="session")
def small_store(small_cache):
    from sconet.cache import open_cache

    return open_cache(small_cache.path)


@pytest.fixture
def store_copy(small_cache, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.zarr"
    shutil.copytree(small_cache.path, dst)
    return dst


@pytest.fixture
def dataset_copy(small_dataset: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "poses"
    shutil.copytree(small_dataset, dst)
    return dst


def _sconet_exe() -> str:
    exe = Path(sys.executable).parent / "sconet"
    if exe.exists():
        return str(exe)
    found = shutil.which("sconet")
    if found is None:  # pragma: no cover - broken install
        pytest.fail("the `sconet` console script is not installed next to this Python")
    return found


@pytest.fixture(scope="session")
def sconet_cli(_isolated_cache_root: Path) -> Callable[..., subprocess.CompletedProcess]:
    exe = _sconet_exe()

    def run(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env["SCONET_CACHE"] = str(_isolated_cache_root)
        env.update(kwargs.pop("env", {}) or {})
        return subprocess.run(
            [exe, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            **kwargs,
        )

    return run

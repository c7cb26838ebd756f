"""Property-based tests (hypothesis) of the inputs sconet reads: pose files, the renderer's entry
points and cache stores. Any input gives a clear error (the expected exception type, a message
naming the file) or a correct result; never a crash, a Rust panic or a hang.

Each property runs a few dozen examples in the default suite; the ``slow`` copies run hundreds
(``pytest -m slow tests/test_fuzz.py``).
"""

from __future__ import annotations

import io
import pickle
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sconet.cache import CacheError, open_cache
from sconet.data import PoseError, load_pose_file
from sconet.data.synth import SynthConfig, generate_sequence
from sconet.render import RenderConfig, impute, pav, pav_batch, render_batch, render_sequence

QUICK = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
THOROUGH = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
HANG_S = 30  # one example taking this long is a hang


@contextmanager
def _no_hang(seconds: float = HANG_S) -> Iterator[None]:
    """Fail an example that runs longer than ``seconds`` (checked whenever Python runs)."""

    def alarm(_sig: int, _frame: object) -> None:
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _both(strategy: st.SearchStrategy, check: Callable[..., None]) -> tuple[Callable, Callable]:
    """A quick test and a thorough (slow) one of ``check`` over ``strategy``."""

    def run(value: object) -> None:
        with _no_hang():
            check(value)

    quick = QUICK(given(strategy)(run))
    thorough = pytest.mark.slow(THOROUGH(given(strategy)(run)))
    return quick, thorough


# -- pose files -------------------------------------------------------------------------------------

_WALK = np.asarray(generate_sequence(0, "neutral", SynthConfig(n_sequences=3, frames=12)), dtype=np.float64)
_SUFFIXES = (".pkl", ".npy", ".npz")


def _pose_contract(path: Path, original: np.ndarray | None = None) -> None:
    """``load_pose_file`` gives a valid pose (equal to ``original`` when that is one) or a
    :class:`PoseError` naming ``path``."""
    try:
        arr = load_pose_file(path)
    except PoseError as exc:
        assert str(exc).startswith(str(path)), str(exc)
        assert "\n" not in str(exc).strip()
        return
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32
    assert arr.ndim == 3 and arr.shape[1:] == (17, 3) and arr.shape[0] >= 1
    assert np.isfinite(arr).all()
    if original is not None and original.ndim == 3 and original.shape[2] == 3:
        np.testing.assert_array_equal(arr, original.astype(np.float32))


@contextmanager
def _written(suffix: str, payload: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"pose{suffix}"
        path.write_bytes(payload)
        yield path


def _random_bytes(args: tuple[str, bytes]) -> None:
    suffix, payload = args
    with _written(suffix, payload) as path:
        _pose_contract(path)


def _encoded(arr: np.ndarray, suffix: str, as_list: bool = False) -> bytes:
    buf = io.BytesIO()
    if suffix == ".pkl":
        pickle.dump(list(arr) if as_list else arr, buf, protocol=4)
    elif suffix == ".npy":
        np.save(buf, arr, allow_pickle=False)
    else:
        np.savez(buf, pose=arr)
    return buf.getvalue()


def _damaged(args: tuple[str, bool, int, list[tuple[float, int]]]) -> None:
    """A real pose file, truncated or with flipped bits."""
    suffix, as_list, cut, flips = args
    data = bytearray(_encoded(_WALK, suffix, as_list))
    for where, bit in flips:
        data[int(where * (len(data) - 1))] ^= 1 << bit
    if cut:
        data = data[: len(data) * cut // 8]
    with _written(suffix, bytes(data)) as path:
        _pose_contract(path, None if (flips or cut) else _WALK)


_DTYPES = st.sampled_from(
    [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.int8, np.bool_, np.complex64]
)
_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1e-30, -1e-30, 1e30, -1e30, 3.4e38, 1e300, np.nan, np.inf]),
)


def _cast(dtype: np.dtype) -> Callable[[float], float]:
    """A value as ``dtype`` holds it (out of range: inf), as a Python number."""

    def cast(v: float) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.array(v).astype(dtype).item()

    return cast


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(_DTYPES))
    shape = draw(
        st.one_of(
            st.tuples(st.integers(0, 6), st.just(17), st.sampled_from([2, 3])),
            hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        )
    )
    if dtype.kind == "f":
        return draw(hnp.arrays(dtype, shape, elements=_VALUES.map(_cast(dtype))))
    return draw(hnp.arrays(dtype, shape))


def _random_arrays(args: tuple[np.ndarray, str, bool]) -> None:
    arr, suffix, as_list = args
    if as_list and (arr.ndim == 0 or suffix != ".pkl"):
        as_list = False
    with np.errstate(all="ignore"):
        payload = _encoded(arr, suffix, as_list)
    with _written(suffix, payload) as path:
        ok = arr.ndim == 3 and arr.shape[0] >= 1 and arr.shape[1] == 17 and arr.shape[2] in (2, 3)
        ok = ok and arr.dtype.kind in "iuf" and bool(np.isfinite(arr.astype(np.float64)).all())
        with np.errstate(over="ignore"):
            ok = ok and bool(np.isfinite(arr.astype(np.float32)).all())
        _pose_contract(path, arr)
        if ok:  # a valid pose must be accepted
            load_pose_file(path)


test_pose_random_bytes, test_pose_random_bytes_thorough = _both(
    st.tuples(st.sampled_from(_SUFFIXES), st.binary(max_size=512)), _random_bytes
)
test_pose_damaged_files, test_pose_damaged_files_thorough = _both(
    st.tuples(
        st.sampled_from(_SUFFIXES),
        st.booleans(),
        st.integers(0, 7),
        st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=3),
    ),
    _damaged,
)
test_pose_random_arrays, test_pose_random_arrays_thorough = _both(
    st.tuples(_arrays(), st.sampled_from(_SUFFIXES), st.booleans()), _random_arrays
)


# -- the renderer's entry points ---------------------------------------------------------------------


def _render_contract(args: tuple[np.ndarray, str]) -> None:
    arr, entry = args
    config = RenderConfig(impute="linear" if arr.size % 2 else "none")
    calls = {
        "render_sequence": lambda: render_sequence(arr, config),
        "render_batch": lambda: render_batch([arr, arr], config, threads=1),
        "pav": lambda: pav(arr),
        "pav_batch": lambda: pav_batch([arr], threads=1),
        "impute": lambda: impute(arr),
    }
    try:
        with np.errstate(all="ignore"):
            out = calls[entry]()
    except ValueError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
        return
    t = arr.shape[0]
    assert arr.ndim == 3 and arr.shape[1:] == (17, 3), "accepted a pose of the wrong shape"
    if entry == "render_sequence":
        assert out.shape == (t, 2, 64, 64) and out.dtype == np.uint8
    elif entry == "render_batch":
        assert out.shape == (2 * t, 2, 64, 64) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[:t], out[t:])
    elif entry == "pav":
        assert out.shape == (8, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    elif entry == "pav_batch":
        assert out.shape == (1, 8, 3) and np.isfinite(out).all()
    else:
        assert out.shape == arr.shape


@st.composite
def _poses(draw: st.DrawFn) -> np.ndarray:
    """Mostly [T, 17, 3] (T = 0 included) with extreme values, sometimes other shapes."""
    shape = draw(
        st.one_of(
            st.tuples(st.integers(0, 5), st.just(17), st.just(3)),
            hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
        )
    )
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return draw(hnp.arrays(dtype, shape, elements=_VALUES.map(_cast(dtype))))


test_render_entry_points, test_render_entry_points_thorough = _both(
    st.tuples(_poses(), st.sampled_from(["render_sequence", "render_batch", "pav", "pav_batch", "impute"])),
    _render_contract,
)


# -- cache stores ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_files(small_cache) -> tuple[Path, list[str], dict[str, np.ndarray]]:
    """The small store, its damageable files (chunks and zarr.json), and what it holds."""
    path = small_cache.path
    files = sorted(
        str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    store = open_cache(path)
    truth = {
        "frames": store.load_frames()[0],
        "offsets": store.offsets.copy(),
        "labels": np.asarray(store.labels).copy(),
        "pav": np.asarray(store.pav).copy(),
    }
    return path, files, truth


def _store_contract(store_files, args: tuple[int, float, int]) -> None:
    """One flipped byte in one file of a store: an error naming the store, or the same data."""
    src, files, truth = store_files
    which, where, mask = args
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.zarr"
        shutil.copytree(src, path)
        target = path / files[which % len(files)]
        data = bytearray(target.read_bytes())
        if not data:
            return
        data[int(where * (len(data) - 1))] ^= mask
        target.write_bytes(bytes(data))
        try:
            store = open_cache(path)
            got = {
                "frames": store.load_frames()[0],
                "offsets": store.offsets,
                "labels": np.asarray(store.labels),
                "pav": np.asarray(store.pav),
            }
        except (CacheError, ValueError) as exc:
            assert str(path) in str(exc), str(exc)
            return
        for key, want in truth.items():
            np.testing.assert_array_equal(got[key], want, err_msg=f"{target.name}: {key} changed silently")


_FLIPS = st.tuples(st.integers(0, 10_000), st.floats(0, 1), st.integers(1, 255))


@QUICK
@given(_FLIPS)
def test_store_byte_flips(store_files, args):
    with _no_hang():
        _store_contract(store_files, args)


@pytest.mark.slow
@THOROUGH
@given(_FLIPS)
def test_store_byte_flips_thorough(store_files, args):
    with _no_hang():
        _store_contract(store_files, args)

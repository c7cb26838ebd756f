"""Pose files, the restricted unpickler, dataset scanning, loading with skip_bad, split files,
validation carving, the atomic file helpers and the cache root. Real files in ``tmp_path``."""

from __future__ import annotations

import json
import os
import pickle
import types
from pathlib import Path

import numpy as np
import pytest

from sconet._io import atomic_write_bytes, atomic_write_json
from sconet._paths import cache_root
from sconet.data import (
    CLASSES,
    DEFAULT_LAYOUT,
    LAYOUTS,
    LoadResult,
    PoseError,
    SequenceRecord,
    Split,
    SplitError,
    carve_validation,
    check_split,
    labels_of,
    load_pose_file,
    load_sequences,
    load_split,
    scan_dataset,
    validate_pose,
    write_skip_report,
)
from sconet.data.layouts import scan_scoliosis1k

OFFICIAL_SPLITS = Path(__file__).resolve().parents[1] / ".." / "shared" / "splits"


def _pose(T: int = 6, seed: int = 0, cols: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.uniform(10, 500, size=(T, 17, cols)).astype(np.float32)
    if cols == 3:
        p[..., 2] = rng.uniform(0.3, 1.0, size=(T, 17))
    return p


def _write(path: Path, obj, protocol: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
    elif path.suffix == ".npy":
        np.save(path, obj)
    else:
        np.savez(path, obj)
    return path


class _Numpy1Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pure-Python pickler that writes numpy 2's ``numpy._core.*`` globals under the numpy 1.x
    names ``numpy.core.*``, i.e. what numpy 1.x itself writes."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]
    dispatch[types.FunctionType] = lambda self, obj: self.save_global(obj)

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core") :]
            qualname = name or obj.__qualname__
            if self.proto >= 4:
                self.save(module)
                self.save(qualname)
                self.write(pickle.STACK_GLOBAL)
            else:
                self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _numpy1_pickle(obj, protocol: int) -> bytes:
    import io

    buf = io.BytesIO()
    _Numpy1Pickler(buf, protocol=protocol).dump(obj)
    data = buf.getvalue()
    assert b"numpy.core" in data and b"numpy._core" not in data
    return data


# --------------------------------------------------------------------------------------------
# pose files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-names", "numpy1-names"])
def test_pickles_of_both_numpy_generations_and_all_protocols(tmp_path, protocol, numpy1):
    pose = _pose(7, seed=protocol)
    data = _numpy1_pickle(pose, protocol) if numpy1 else pickle.dumps(pose, protocol=protocol)
    path = tmp_path / f"p{protocol}.pkl"
    path.write_bytes(data)
    out = load_pose_file(path)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (7, 17, 3)
    np.testing.assert_array_equal(out, pose)
    # float64, Fortran order and a non-contiguous source also load
    for variant in (pose.astype(np.float64), np.asfortranarray(pose), pose[::2]):
        data = _numpy1_pickle(variant, protocol) if numpy1 else pickle.dumps(variant, protocol=protocol)
        path.write_bytes(data)
        np.testing.assert_array_equal(load_pose_file(path), variant.astype(np.float32))


def test_npy_npz_and_two_columns(tmp_path):
    pose = _pose(5)
    np.testing.assert_array_equal(load_pose_file(_write(tmp_path / "a.npy", pose)), pose)
    np.testing.assert_array_equal(load_pose_file(_write(tmp_path / "a.npz", pose)), pose)
    xy = _pose(5, cols=2).astype(np.float64)
    for suffix in (".pkl", ".npy", ".npz"):
        out = load_pose_file(_write(tmp_path / f"xy{suffix}", xy))
        assert out.shape == (5, 17, 3) and out.dtype == np.float32
        np.testing.assert_array_equal(out[..., :2], xy.astype(np.float32))
        assert (out[..., 2] == 1.0).all()
    ints = (np.arange(2 * 17 * 3).reshape(2, 17, 3)).astype(np.int16)
    np.testing.assert_array_equal(load_pose_file(_write(tmp_path / "i.npy", ints)), ints.astype(np.float32))


def test_list_of_frames_is_stacked(tmp_path):
    pose = _pose(4)
    for container in (list(pose), tuple(pose)):
        np.testing.assert_array_equal(load_pose_file(_write(tmp_path / "l.pkl", container)), pose)
    with pytest.raises(PoseError, match="frame 1"):
        load_pose_file(_write(tmp_path / "m.pkl", [pose[0], pose[1, :5]]))
    with pytest.raises(PoseError, match="empty"):
        load_pose_file(_write(tmp_path / "e.pkl", []))


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_hostile_pickles_are_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    cases = {
        "system.pkl": _Evil(marker),
        "nested.pkl": [_pose(2)[0], _Evil(marker)],
        "eval.pkl": _EvalEvil(),
    }
    for name, obj in cases.items():
        for protocol in (2, 4, 5):
            path = tmp_path / name
            path.write_bytes(pickle.dumps(obj, protocol=protocol))
            with pytest.raises(PoseError) as err:
                load_pose_file(path)
            msg = str(err.value)
            assert msg.startswith(str(path)) and "refusing to unpickle" in msg, msg
            assert "system" in msg or "eval" in msg
            assert not marker.exists(), "the hostile pickle was executed"
    # a subclass of ndarray (np.matrix) is not plain numpy data either
    path = tmp_path / "matrix.pkl"
    path.write_bytes(pickle.dumps(np.ma.masked_array(np.ones((2, 17, 3)), mask=False), protocol=4))
    with pytest.raises(PoseError, match="refusing"):
        load_pose_file(path)


def test_object_dtype_is_refused(tmp_path):
    obj = np.empty((2, 17, 3), dtype=object)
    obj[...] = 1.0
    for protocol in (2, 4, 5):
        path = _write(tmp_path / f"obj{protocol}.pkl", obj, protocol)
        with pytest.raises(PoseError, match="refusing") as err:
            load_pose_file(path)
        assert str(err.value).startswith(str(path))
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    with pytest.raises(PoseError, match="refusing") as err:
        load_pose_file(tmp_path / "obj.npy")
    assert str(tmp_path / "obj.npy") in str(err.value)
    np.savez(tmp_path / "obj.npz", obj)
    with pytest.raises(PoseError, match="refusing"):
        load_pose_file(tmp_path / "obj.npz")


def test_truncated_and_corrupt_files(tmp_path):
    data = pickle.dumps(_pose(20), protocol=4)
    cases = {
        "trunc.pkl": data[: len(data) // 2],
        "tiny.pkl": data[:3],
        "empty.pkl": b"",
        "junk.pkl": b"this is not a pickle",
        "trunc.npy": _npy_bytes(_pose(20))[:200],
        "junk.npz": b"PK\x03\x04 broken zip",
    }
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(PoseError) as err:
            load_pose_file(path)
        assert str(err.value).startswith(f"{path}: "), str(err.value)
        assert isinstance(err.value, ValueError)
    with pytest.raises(PoseError, match="not found") as err:
        load_pose_file(tmp_path / "absent.pkl")
    assert str(tmp_path / "absent.pkl") in str(err.value)
    with pytest.raises(PoseError, match="unsupported"):
        load_pose_file(_write(tmp_path / "x.npy", _pose(2)).rename(tmp_path / "x.txt"))


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize(
    "arr, pattern",
    [
        (np.full((3, 17, 3), np.nan, np.float32), "non-finite"),
        (np.concatenate([np.ones((2, 17, 3)), np.full((1, 17, 3), np.inf)]).astype(np.float64), "non-finite"),
        (np.full((3, 17, 3), 1e300), "too large for float32"),
        (np.ones((3, 18, 3), np.float32), r"shape"),
        (np.ones((3, 17, 4), np.float32), r"shape"),
        (np.ones((17, 3), np.float32), r"shape"),
        (np.ones((0, 17, 3), np.float32), "T = 0"),
        (np.ones((3, 17, 3), dtype=bool), "dtype"),
        (np.ones((3, 17, 3), dtype=np.complex64), "dtype"),
        (np.array(["a"] * 153).reshape(3, 17, 3), "dtype"),
    ],
)
def test_invalid_arrays_name_the_file(tmp_path, arr, pattern):
    for suffix in (".pkl", ".npy"):
        path = _write(tmp_path / f"bad{suffix}", arr)
        with pytest.raises(PoseError, match=pattern) as err:
            load_pose_file(path)
        assert str(err.value).startswith(f"{path}: ")
        assert err.value.path == str(path) and err.value.reason


def test_validate_pose_direct():
    out = validate_pose(_pose(3, cols=2), "somewhere.pkl")
    assert out.shape == (3, 17, 3) and (out[..., 2] == 1).all()
    with pytest.raises(PoseError, match=r"^src\.npy: expected a numpy array"):
        validate_pose([[1, 2]], "src.npy")
    with pytest.raises(PoseError, match=r"^f\.pkl: .*frame 1, keypoint 4"):
        bad = np.ones((3, 17, 3))
        bad[1, 4, 0] = np.nan
        validate_pose(bad, "f.pkl")
    # PoseError survives pickling (e.g. across process pools)
    err = pickle.loads(pickle.dumps(PoseError("a.pkl", "broken")))
    assert str(err) == "a.pkl: broken" and err.reason == "broken"


def test_npz_must_hold_one_array(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=_pose(2), b=_pose(2))
    with pytest.raises(PoseError, match="exactly one array"):
        load_pose_file(path)


# --------------------------------------------------------------------------------------------
# dataset layout
# --------------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, np.ndarray]:
    poses = {
        "00002": _pose(5, 2),
        "00000": _pose(4, 0),
        "00001": _pose(6, 1, cols=2),
        "00010": _pose(3, 10),
    }
    _write(root / "00002" / "Positive" / "000_180" / "000_180.pkl", poses["00002"])
    _write(root / "00000" / "negative" / "000_180" / "000_180.npy", poses["00000"])
    _write(root / "00001" / "NEUTRAL" / "001_000" / "001_000.npz", poses["00001"])
    _write(root / "00010" / "positive" / "000_000" / "000_000.pkl", poses["00010"], protocol=2)
    (root / "Scoliosis1K_112.json").write_text("{}")  # files at the root are ignored
    (root / ".hidden").mkdir()
    return poses


def test_scan_and_load_tree(tmp_path):
    poses = _tree(tmp_path)
    records = scan_dataset(tmp_path)
    assert [r.id for r in records] == ["00000", "00001", "00002", "00010"]
    assert all(isinstance(r.id, str) for r in records)
    assert [r.label for r in records] == ["negative", "neutral", "positive", "positive"]
    assert [r.view for r in records] == ["000_180", "001_000", "000_180", "000_000"]
    assert records[0].path == tmp_path / "00000" / "negative" / "000_180" / "000_180.npy"
    loaded = load_sequences(records)
    assert isinstance(loaded, LoadResult) and loaded.skipped == [] and len(loaded) == 4
    for rec, pose in zip(loaded.records, loaded.poses, strict=True):
        src = poses[rec.id]
        assert pose.shape == (src.shape[0], 17, 3) and pose.dtype == np.float32
        np.testing.assert_array_equal(pose[..., : src.shape[2]], src)
    assert labels_of(records) == {
        "00000": "negative",
        "00001": "neutral",
        "00002": "positive",
        "00010": "positive",
    }


def test_scan_finds_a_single_differently_named_file(tmp_path):
    _write(tmp_path / "00000" / "Negative" / "000_180" / "000.pkl", _pose(2))
    (rec,) = scan_dataset(tmp_path)
    assert rec.path.name == "000.pkl"
    _write(tmp_path / "00000" / "Negative" / "000_180" / "001.pkl", _pose(2))
    with pytest.raises(PoseError, match="2 pose files") as err:
        scan_dataset(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "00000" / "Negative" / "000_180"))


def test_unknown_label_folder_is_an_error(tmp_path):
    _tree(tmp_path)
    bad = tmp_path / "00003" / "Unknown" / "000_180"
    _write(bad / "000_180.pkl", _pose(2))
    with pytest.raises(PoseError, match="unknown label folder 'Unknown'") as err:
        scan_dataset(tmp_path)
    assert str(err.value).startswith(str(bad.parent))


def test_scan_errors(tmp_path):
    with pytest.raises(PoseError, match="not found"):
        scan_dataset(tmp_path / "nowhere")
    (tmp_path / "00000" / "Positive" / "000_180").mkdir(parents=True)
    with pytest.raises(PoseError, match="no pose file"):
        scan_dataset(tmp_path)
    _write(tmp_path / "00000" / "Positive" / "000_180" / "000_180.pkl", _pose(2))
    _write(tmp_path / "00000" / "Negative" / "000_180" / "000_180.pkl", _pose(2))
    with pytest.raises(PoseError, match="two labels"):
        scan_dataset(tmp_path)
    with pytest.raises(ValueError):
        SequenceRecord("00000", "Maybe", "000_180", tmp_path)


def scan_flat(root: Path, skipped=None) -> list[SequenceRecord]:
    """A second layout for the tests: ``<root>/<label>/<id>.npy``, one view (``000_000``) per id."""
    return [SequenceRecord(p.stem, p.parent.name, "000_000", p) for p in root.glob("*/*.npy")]


def test_layout_registry(tmp_path, monkeypatch):
    assert LAYOUTS["scoliosis1k"] is scan_scoliosis1k and DEFAULT_LAYOUT == "scoliosis1k"
    for sid, label in (("b7", "positive"), ("a1", "negative"), ("a2", "neutral")):
        _write(tmp_path / label / f"{sid}.npy", _pose(3))
    with pytest.raises(ValueError, match="unknown dataset layout 'flat'; registered: scoliosis1k"):
        scan_dataset(tmp_path, layout="flat")
    monkeypatch.setitem(LAYOUTS, "flat", scan_flat)
    records = scan_dataset(tmp_path, layout="flat")
    assert [(r.id, r.label, r.view) for r in records] == [
        ("a1", "negative", "000_000"),
        ("a2", "neutral", "000_000"),
        ("b7", "positive", "000_000"),
    ]
    assert records[2].path == tmp_path / "positive" / "b7.npy"
    assert scan_dataset(tmp_path) == []  # read as Scoliosis1K: no <id>/<Label>/<view> folders
    with pytest.raises(PoseError, match="not found"):
        scan_dataset(tmp_path / "nowhere", layout="flat")
    # a sequence listed twice by a layout is refused, naming both files
    monkeypatch.setitem(LAYOUTS, "twice", lambda root, skipped: scan_flat(root) + scan_flat(root)[:1])
    with pytest.raises(PoseError, match="listed twice"):
        scan_dataset(tmp_path, layout="twice")


def test_skip_bad_collects_reasons_and_reports(tmp_path):
    _tree(tmp_path)
    nan = _write(tmp_path / "00004" / "Negative" / "000_180" / "000_180.pkl", np.full((2, 17, 3), np.nan))
    evil = tmp_path / "00005" / "Negative" / "000_180" / "000_180.pkl"
    evil.parent.mkdir(parents=True)
    evil.write_bytes(pickle.dumps(_Evil(tmp_path / "pwned"), protocol=4))
    trunc = tmp_path / "00006" / "Positive" / "000_180" / "000_180.pkl"
    trunc.parent.mkdir(parents=True)
    trunc.write_bytes(pickle.dumps(_pose(30), protocol=4)[:-50])
    records = scan_dataset(tmp_path)
    with pytest.raises(PoseError) as err:
        load_sequences(records)
    assert str(err.value).startswith(str(nan))
    res = load_sequences(records, skip_bad=True)
    assert [r.id for r in res.records] == ["00000", "00001", "00002", "00010"]
    assert [p for p, _ in res.skipped] == [str(nan), str(evil), str(trunc)]
    reasons = [r for _, r in res.skipped]
    assert "non-finite" in reasons[0] and "refusing to unpickle" in reasons[1] and "truncated" in reasons[2]
    assert not (tmp_path / "pwned").exists()

    report = write_skip_report(res.skipped, tmp_path / "skipped.json")
    doc = json.loads(report.read_text())
    assert doc["count"] == 3 and doc["skipped"][1] == {"path": str(evil), "reason": reasons[1]}
    text = write_skip_report(res.skipped, tmp_path / "skipped.txt").read_text().splitlines()
    assert text[0] == "3 pose file(s) skipped" and text[1] == f"{nan}: {reasons[0]}"


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def _split_file(tmp_path: Path, doc, name: str = "Scoliosis1K_112.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_load_split_and_roundtrip(tmp_path):
    path = _split_file(tmp_path, {"TRAIN_SET": ["00001", "00000"], "TEST_SET": ["00002"]})
    split = load_split(path)
    assert split == Split("Scoliosis1K_112", ("00001", "00000"), ("00002",))
    assert split.ids == ("00001", "00000", "00002")
    again = load_split(split.save(tmp_path / "copy.json"))
    assert again.train_ids == split.train_ids and again.test_ids == split.test_ids and again.name == "copy"
    assert json.loads(split.to_json()) == {"TRAIN_SET": ["00001", "00000"], "TEST_SET": ["00002"]}


@pytest.mark.parametrize(
    "doc, pattern",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"TRAIN_SET": ["00000"]}, "missing key"),
        ({"TRAIN_SET": "00000", "TEST_SET": []}, "TRAIN_SET must be a list"),
        ({"TRAIN_SET": [0, 1], "TEST_SET": []}, r"TRAIN_SET\[0\] must be a string"),
        ({"TRAIN_SET": ["00000"], "TEST_SET": ["00001", None]}, r"TEST_SET\[1\] must be a string"),
        ({"TRAIN_SET": ["00000", "00000"], "TEST_SET": []}, "more than once"),
        ({"TRAIN_SET": ["00000", "00001"], "TEST_SET": ["00001"]}, "in both TRAIN_SET and TEST_SET"),
        ({"TRAIN_SET": [""], "TEST_SET": []}, "empty id"),
    ],
)
def test_load_split_errors_name_the_file(tmp_path, doc, pattern):
    path = _split_file(tmp_path, doc)
    with pytest.raises(SplitError, match=pattern) as err:
        load_split(path)
    assert str(err.value).startswith(str(path))
    assert isinstance(err.value, ValueError)


def test_missing_split_file(tmp_path):
    with pytest.raises(SplitError, match="not found"):
        load_split(tmp_path / "absent.json")


def test_carve_validation_is_stratified_and_deterministic():
    labels = {f"{i:05d}": CLASSES[0] if i < 60 else CLASSES[1] if i < 75 else CLASSES[2] for i in range(100)}
    split = Split("s", tuple(labels)[:90], tuple(labels)[90:])
    tr, va = split.carve_validation(labels, fraction=0.2, seed=3)
    assert set(tr) | set(va) == set(split.train_ids) and not set(tr) & set(va)
    per = {c: sum(labels[i] == c for i in va) for c in CLASSES}
    assert per == {"negative": 12, "neutral": 3, "positive": 3}  # 20 % of 60 / 15 / 15
    assert (tr, va) == split.carve_validation(labels, fraction=0.2, seed=3)
    assert va != split.carve_validation(labels, fraction=0.2, seed=4)[1]
    assert list(tr) == [i for i in split.train_ids if i in set(tr)]  # input order kept
    # a tiny class still gets one validation id, never all of them
    small = {"a": "neutral", "b": "neutral", "c": "positive"}
    tr, va = carve_validation(["a", "b", "c"], small, 0.1, 0)
    assert len([i for i in va if small[i] == "neutral"]) == 1 and "c" in tr
    assert carve_validation(["a", "b", "c"], small, 0.0, 0) == (("a", "b", "c"), ())
    with pytest.raises(ValueError, match="no label"):
        carve_validation(["a", "z"], small, 0.1, 0)
    with pytest.raises(ValueError, match="fraction"):
        carve_validation(["a"], small, 1.0, 0)


def test_check_split_reports_missing_ids(tmp_path):
    _tree(tmp_path)
    records = scan_dataset(tmp_path)
    split = Split("s", ("00000", "00001", "09999"), ("00002", "08888"))
    report = check_split(split, records)
    assert not report.ok
    assert report.missing_train == ("09999",) and report.missing_test == ("08888",)
    assert report.unused == ("00010",)
    msgs = report.messages("s")
    assert any("09999" in m for m in msgs) and any("08888" in m for m in msgs)
    assert check_split(Split("t", ("00000", "00001"), ("00002", "00010")), records).ok


def test_official_split_files_if_present():
    if not OFFICIAL_SPLITS.is_dir():
        pytest.skip("official split files not available (../shared/splits)")
    files = sorted(OFFICIAL_SPLITS.glob("Scoliosis1K_*.json"))
    assert len(files) == 4
    all_ids = {f"{i:05d}" for i in range(1493)}
    for path in files:
        split = load_split(path)
        assert split.name == path.stem
        ids = split.train_ids + split.test_ids
        assert len(ids) == 1493 and set(ids) == all_ids, path.name
        assert len(split.train_ids) in (744, 745)
        assert check_split(split, sorted(all_ids)).ok


# --------------------------------------------------------------------------------------------
# helpers: atomic writes, cache root
# --------------------------------------------------------------------------------------------


def test_atomic_write_bytes(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two", fsync=False)
    assert path.read_bytes() == b"two"
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"], "temporary file left behind"
    atomic_write_json(tmp_path / "d.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "d.json").read_text()) == {"a": [1, 2]}


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SCONET_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("SCONET_CACHE")
    monkeypatch.chdir(tmp_path)
    assert cache_root() == tmp_path / "data_cache"
    monkeypatch.setenv("SCONET_CACHE", "")
    assert cache_root() == tmp_path / "data_cache"


def test_mutated_pickles_never_escape_as_other_errors(tmp_path):
    """Random byte flips and every truncation of real pose pickles: each load either returns a
    valid array or raises PoseError naming the file (no crash, no other exception type)."""
    rng = np.random.default_rng(1234)
    path = tmp_path / "fuzz.pkl"
    outcomes = {"ok": 0, "error": 0}
    for protocol in (2, 4, 5):
        for obj in (_pose(3), list(_pose(2))):
            data = pickle.dumps(obj, protocol=protocol)
            variants = [data[:n] for n in range(0, len(data), 7)]
            for _ in range(150):
                b = bytearray(data)
                for _ in range(int(rng.integers(1, 4))):
                    b[int(rng.integers(len(b)))] = int(rng.integers(256))
                variants.append(bytes(b))
            for blob in variants:
                path.write_bytes(blob)
                try:
                    out = load_pose_file(path)
                except PoseError as exc:
                    assert str(exc).startswith(f"{path}: ") and str(exc).isprintable()
                    outcomes["error"] += 1
                else:
                    assert out.dtype == np.float32 and out.shape[1:] == (17, 3)
                    outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


def _py2_pickle(arr: np.ndarray) -> bytes:
    """A protocol-2 numpy pickle as Python 2 wrote it: byte strings are BINSTRING opcodes."""
    import struct

    def s(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)

    raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    T = arr.shape[0]
    return b"".join(
        [
            b"\x80\x02",
            b"cnumpy.core.multiarray\n_reconstruct\n",
            b"cnumpy\nndarray\n",
            b"K\x00\x85",
            s(b"b"),
            b"\x87R",  # (0,), 'b' -> REDUCE
            b"(K\x01",
            b"K" + bytes([T]) + b"K\x11K\x03\x87",  # version, shape
            b"cnumpy\ndtype\n",
            s(b"f4"),
            b"K\x00K\x01\x87R",
            b"(K\x03",
            s(b"<"),
            b"NNN",
            b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
            b"\x89",
            s(raw),
            b"tb.",
        ]
    )


def test_python2_numpy_pickle(tmp_path):
    pose = _pose(4)
    path = tmp_path / "py2.pkl"
    path.write_bytes(_py2_pickle(pose))
    np.testing.assert_array_equal(load_pose_file(path), pose)

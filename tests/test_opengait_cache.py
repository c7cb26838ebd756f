"""OpenGait heatmap trees <-> sconet stores: `sconet cache import` / `sconet cache export`.

Round trips byte for byte (tree -> store -> tree gives identical files; store -> tree -> store
gives identical frames), the numpy-1.x pickle bytes OpenGait writes, provenance and PAV, refusals.
"""

from __future__ import annotations

import filecmp
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from sconet.cache import (
    CacheError,
    ImportConfig,
    export_heatmaps,
    import_heatmaps,
    open_cache,
    verify_cache,
)
from sconet.cache.opengait import IMPORTED
from sconet.data import PoseError
from sconet.data.heatmaps import PickleFlavour, dumps_heatmap, load_heatmap_file, pickle_flavour
from sconet.render import RenderConfig
from sconet.render.spec import RenderSpec

FIXTURE = Path(__file__).parent / "data" / "opengait" / "numpy1-protocol4.pkl"


def _write_tree(root: Path, n: int = 5, seed: int = 0, **dump_kwargs) -> dict[str, np.ndarray]:
    """An OpenGait-style tree written the way pretreatment_heatmap.py does (`pickle.dump`)."""
    rng = np.random.default_rng(seed)
    labels = ["Positive", "Negative", "Neutral"]
    arrays = {}
    for i in range(n):
        for view in ("000_180", "090_000"):
            rel = f"{i:05d}/{labels[i % 3]}/{view}/{view}.pkl"
            t = int(rng.integers(1, 400))
            maps = rng.integers(0, 256, (t, 2, 64, 64), dtype=np.uint8)
            maps[:, :, :8] = 0  # realistic zero rows
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(root / rel, "wb") as f:
                pickle.dump(maps, f, **dump_kwargs)
            arrays[rel] = maps
    return arrays


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _same_tree(a: Path, b: Path) -> bool:
    files = _files(a)
    if files != _files(b):
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    return not mismatch and not errors


def test_numpy1_pickle_bytes_are_reproduced():
    raw = FIXTURE.read_bytes()
    want = (np.arange(1 * 2 * 64 * 64) % 251).astype(np.uint8).reshape(1, 2, 64, 64)
    maps = load_heatmap_file(FIXTURE)
    assert np.array_equal(maps, want)
    assert pickle_flavour(raw) == PickleFlavour(4, "numpy.core")
    assert dumps_heatmap(maps) == raw  # the default flavour is OpenGait's under numpy 1.x
    assert dumps_heatmap(maps, PickleFlavour(4, "numpy._core")) != raw
    # this numpy's own pickle.dumps, any protocol, is reproduced too
    for protocol in (2, 3, 4, 5):
        ours = pickle.dumps(want, protocol=protocol)
        assert dumps_heatmap(want, pickle_flavour(ours)) == ours


def test_import_export_gives_identical_files(tmp_path):
    tree = tmp_path / "tree"
    arrays = _write_tree(tree)
    odd = tree / "00001" / "Negative" / "000_180"
    (odd / "000_180.pkl").rename(odd / "sequence.pkl")  # the only pickle of its view: still read
    result = import_heatmaps(ImportConfig(tree, out=tmp_path / "og.zarr"))
    store = open_cache(result.path)
    assert verify_cache(result.path).ok
    assert result.n_sequences == 10 and store.n_frames == sum(len(a) for a in arrays.values())
    for rel, maps in arrays.items():
        sid, label, view = rel.split("/")[:3]
        assert np.array_equal(store.sequence(f"{sid}/{view}"), maps)
        assert store.label_name(store.index_of(f"{sid}/{view}")) == label.lower()
    out = tmp_path / "back"
    exported = export_heatmaps(result.path, out)
    assert exported.same_bytes_as_source is True
    assert _same_tree(tree, out)


def test_numpy1_tree_round_trips_and_exports_in_its_flavour(tmp_path):
    tree = tmp_path / "tree"
    (tree / "00042" / "Positive" / "000_180").mkdir(parents=True)
    target = tree / "00042" / "Positive" / "000_180" / "000_180.pkl"
    target.write_bytes(FIXTURE.read_bytes())
    result = import_heatmaps(ImportConfig(tree, out=tmp_path / "s.zarr"))
    assert open_cache(result.path).provenance["pickle"] == {
        "flavour": {"protocol": 4, "numpy_module": "numpy.core"},
        "byte_exact": True,
    }
    export_heatmaps(result.path, tmp_path / "back")
    assert _same_tree(tree, tmp_path / "back")
    # asking for another flavour writes the same arrays, other bytes, and says so
    other = export_heatmaps(result.path, tmp_path / "v2", flavour=PickleFlavour(5, "numpy._core"))
    assert other.same_bytes_as_source is False and other.notes
    assert np.array_equal(
        load_heatmap_file(tmp_path / "v2" / target.relative_to(tree)), load_heatmap_file(target)
    )


def test_export_import_gives_identical_frames(small_store, tmp_path):
    out = tmp_path / "og"
    exported = export_heatmaps(small_store.path, out, label_case="capitalized")
    assert exported.files == small_store.n_sequences and exported.same_bytes_as_source is None
    first = out / small_store.ids[0] / small_store.label_name(0).capitalize() / small_store.views[0]
    with open(first / f"{small_store.views[0]}.pkl", "rb") as f:  # as OpenGait reads it
        plain = pickle.load(f)
    assert type(plain) is np.ndarray and plain.dtype == np.uint8 and plain.shape[1:] == (2, 64, 64)
    assert pickle_flavour((first / f"{small_store.views[0]}.pkl").read_bytes()) == PickleFlavour()
    back = open_cache(import_heatmaps(ImportConfig(out, out=tmp_path / "back.zarr")).path)
    assert back.ids == small_store.ids and back.views == small_store.views
    assert np.array_equal(back.labels, small_store.labels)
    assert np.array_equal(back.offsets, small_store.offsets)
    assert np.array_equal(back.load_frames()[0], small_store.load_frames()[0])


def test_lower_case_labels_are_the_default_for_rendered_stores(small_store, tmp_path):
    export_heatmaps(small_store.path, tmp_path / "og")
    labels = {p.name for p in (tmp_path / "og").glob("*/*")}
    assert labels <= {"negative", "neutral", "positive"} and labels


def test_provenance_and_pav_from_poses(small_store, small_dataset, tmp_path):
    tree = tmp_path / "og"
    export_heatmaps(small_store.path, tree, label_case="capitalized")
    stated = RenderSpec(settings={"sigma_limb": 15.0, "impute": "none"})
    with_poses = open_cache(
        import_heatmaps(ImportConfig(tree, stated=stated, poses=small_dataset, out=tmp_path / "p.zarr")).path
    )
    assert with_poses.pav_available
    assert np.array_equal(with_poses.pav, small_store.pav)  # the PAV the rendered store computed
    assert with_poses.attrs["render"] == RenderConfig(impute="none").to_dict()
    assert with_poses.attrs["renderer_version"] == IMPORTED
    prov = with_poses.provenance
    assert prov["described_as"] == "settings sigma_limb=15, impute=none"
    assert prov["stated"]["settings"] == {"sigma_limb": 15.0, "impute": "none"}
    assert prov["poses"] == str(small_dataset)
    assert with_poses.dataset == small_store.dataset  # the poses name the dataset
    unknown = open_cache(import_heatmaps(ImportConfig(tree, out=tmp_path / "u.zarr")).path)
    assert not unknown.pav_available and not unknown.pav.any()
    assert unknown.render_config is None and unknown.provenance["described_as"] == "unknown"


def test_reuse_and_replace(tmp_path):
    tree = tmp_path / "tree"
    arrays = _write_tree(tree, n=2)
    first = import_heatmaps(ImportConfig(tree))
    assert not first.reused and first.path.name.endswith(".zarr") and "-imported-" in first.path.name
    again = import_heatmaps(ImportConfig(tree))
    assert again.reused and again.path == first.path
    rel = next(iter(arrays))
    changed = arrays[rel].copy()
    changed[0, 0, 30, 30] ^= 1
    (tree / rel).write_bytes(pickle.dumps(changed))
    redo = import_heatmaps(ImportConfig(tree))
    assert not redo.reused and redo.replaced and redo.path == first.path
    store = open_cache(redo.path)
    sid, _, view = rel.split("/")[:3]
    assert np.array_equal(store.sequence(f"{sid}/{view}"), changed)
    # a damaged store is imported again, not reused
    (redo.path / "offsets" / "zarr.json").unlink()
    fixed = import_heatmaps(ImportConfig(tree))
    assert not fixed.reused and "damaged" in fixed.replaced
    assert np.array_equal(open_cache(fixed.path).sequence(f"{sid}/{view}"), changed)
    # a chunk edited in place opens fine but differs from the store's manifest: imported again
    assert (fixed.path / "integrity.json").is_file() and open_cache(fixed.path).attrs["index_digest"]
    chunk = fixed.path / "frames" / "c.0.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\0")
    edited = import_heatmaps(ImportConfig(tree))
    assert not edited.reused and "frames/c.0.0.0.0" in edited.replaced
    assert verify_cache(edited.path).ok
    # another statement is another store
    stated = import_heatmaps(ImportConfig(tree, stated=RenderSpec(settings={"sigma_joint": 4})))
    assert stated.path != first.path


@pytest.mark.parametrize(
    "content, message",
    [
        (np.zeros((3, 2, 64, 32), np.uint8), "expected shape [T, 2, 64, 64], got [3, 2, 64, 32]"),
        (np.zeros((3, 2, 64, 64), np.float32), "expected a uint8 heatmap array, got dtype float32"),
        (np.zeros((0, 2, 64, 64), np.uint8), "empty sequence"),
        ({"maps": 1}, "the pickle holds a dict, expected a numpy array"),
        (np.zeros((3, 2, 64, 64), object), "refusing to unpickle an object-dtype array"),
    ],
)
def test_bad_file_is_named_and_nothing_is_written(tmp_path, content, message):
    tree = tmp_path / "tree"
    _write_tree(tree, n=3)
    bad = tree / "00001" / "Negative" / "000_180" / "000_180.pkl"
    bad.write_bytes(pickle.dumps(content))
    out = tmp_path / "s.zarr"
    with pytest.raises(PoseError) as err:
        import_heatmaps(ImportConfig(tree, out=out))
    assert str(err.value).startswith(str(bad)) and message in str(err.value)
    assert not out.exists() and not out.with_name("s.zarr.partial").exists()


def test_hostile_pickle_is_refused_without_running(tmp_path):
    tree = tmp_path / "tree"
    _write_tree(tree, n=1)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tree / "00000" / "Positive" / "000_180" / "000_180.pkl"
    bad.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(PoseError, match="refusing to unpickle"):
        import_heatmaps(ImportConfig(tree, out=tmp_path / "s.zarr"))
    assert not marker.exists()


def test_poses_must_match_the_heatmaps(small_store, small_dataset, dataset_copy, tmp_path):
    tree = tmp_path / "og"
    export_heatmaps(small_store.path, tree)
    victim = sorted(dataset_copy.glob("*/*/*/*.pkl"))[0]
    arr = np.asarray(pickle.loads(victim.read_bytes()))
    victim.write_bytes(pickle.dumps(arr[:-1]))
    with pytest.raises(PoseError, match="frames but its heatmaps have"):
        import_heatmaps(ImportConfig(tree, poses=dataset_copy, out=tmp_path / "a.zarr"))
    for p in victim.parent.parent.parent.iterdir():  # remove that id's poses
        import shutil

        shutil.rmtree(p)
    with pytest.raises(PoseError, match="no pose sequence for"):
        import_heatmaps(ImportConfig(tree, poses=dataset_copy, out=tmp_path / "b.zarr"))


def test_export_refuses_to_overwrite_by_default(small_store, tmp_path):
    out = tmp_path / "og"
    export_heatmaps(small_store.path, out)
    with pytest.raises(CacheError, match="exists and is not empty"):
        export_heatmaps(small_store.path, out)
    stray = out / "00000" / "extra.txt"
    stray.write_text("kept?")
    export_heatmaps(small_store.path, out, overwrite=True)  # an earlier export: replaced whole
    assert not stray.exists()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(CacheError, match="holds files"):
        export_heatmaps(small_store.path, notes, overwrite=True)
    assert (notes / "todo.txt").read_text() == "mine"


def test_cli_import_export(sconet_cli, tmp_path):
    tree = tmp_path / "tree"
    _write_tree(tree, n=3, protocol=2)
    store = tmp_path / "og.zarr"
    done = sconet_cli(
        "cache", "import", tree, "--out", store, "--representation", "full-body", "--sigma-joint", "8"
    )
    assert done.returncode == 0, done.stderr
    assert "imported:" in done.stdout and "settings representation=full-body, sigma_joint=8" in done.stdout
    assert "DRF cannot train on it" in done.stderr
    back = tmp_path / "back"
    done = sconet_cli("cache", "export", store, back)
    assert done.returncode == 0, done.stderr
    assert "byte for byte" in done.stdout and "protocol 2" in done.stdout
    assert _same_tree(tree, back)
    again = sconet_cli("cache", "export", store, back)
    assert (
        again.returncode == 2 and again.stderr.startswith("error: ") and len(again.stderr.splitlines()) == 1
    )
    bad = sconet_cli("cache", "import", tree, "--impute", "cubic", "--out", tmp_path / "x.zarr")
    assert bad.returncode == 2 and "impute must be one of" in bad.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_cli_import_export_progress_flags(sconet_cli, tmp_path):
    tree = tmp_path / "tree"
    _write_tree(tree, n=3, protocol=2)
    store = tmp_path / "og.zarr"
    plain = sconet_cli("cache", "import", tree, "--out", store, "--no-progress")
    assert plain.returncode == 0, plain.stderr
    assert re.search(r"^importing: ([\d,]+)/\1 \(100 %\)", plain.stderr, re.M), plain.stderr
    bar = sconet_cli("cache", "export", store, tmp_path / "back", "--progress")  # a bar though not a tty
    assert bar.returncode == 0, bar.stderr
    assert "exporting" in bar.stderr and not re.search(r"^exporting: .*\(100 %\)", bar.stderr, re.M)
    lines = sconet_cli("cache", "export", store, tmp_path / "back2", "--no-progress")
    assert re.search(r"^exporting: ([\d,]+)/\1 \(100 %\)", lines.stderr, re.M), lines.stderr

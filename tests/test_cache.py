"""Zarr cache: contents, reuse and fingerprints, crash safety and resume, verify, open, find,
bad input handling, preview. Real stores and files on the small synthetic dataset (conftest)."""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sconet import cache as C
from sconet.cache import CacheConfig, CacheError, build_cache, find_cache, open_cache, verify_cache
from sconet.classes import CLASSES


def _load(root: Path):
    from sconet.data import load_sequences, scan_dataset

    return load_sequences(scan_dataset(root))


def _pose_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*/*") if p.suffix in (".pkl", ".npy", ".npz"))


# --------------------------------------------------------------------------------------------
# contents
# --------------------------------------------------------------------------------------------


def test_store_equals_direct_rendering(small_cache, small_store, small_dataset, small_render_config):
    from sconet.render import pav_batch, render_batch

    loaded = _load(small_dataset)
    assert small_store.n_sequences == len(loaded.records) == 30
    assert small_store.ids == [r.id for r in loaded.records]
    assert small_store.views == [r.view for r in loaded.records]
    assert [CLASSES[k] for k in small_store.labels] == [r.label for r in loaded.records]
    lengths = [p.shape[0] for p in loaded.poses]
    assert small_store.offsets.tolist() == np.concatenate([[0], np.cumsum(lengths)]).tolist()

    expected = render_batch(loaded.poses, small_render_config)
    frames, offsets = small_store.load_frames()
    assert frames.dtype == np.uint8 and frames.shape == expected.shape
    np.testing.assert_array_equal(frames, expected)
    np.testing.assert_array_equal(offsets, small_store.offsets)
    # the chunk files written by the cache's own writer read back identically through zarr
    np.testing.assert_array_equal(np.asarray(small_store.frames[:]), expected)
    np.testing.assert_allclose(small_store.pav, pav_batch(loaded.poses), rtol=0, atol=0)
    for i in (0, 7, 29):
        np.testing.assert_array_equal(small_store.sequence(i), expected[offsets[i] : offsets[i + 1]])
    assert frames.any(), "a rendered store should not be blank"


def test_store_layout_and_attrs(small_store, small_render_config):
    import zarr

    attrs = small_store.attrs
    for key in (
        "format_version",
        "ids",
        "views",
        "classes",
        "render",
        "renderer_version",
        "sconet_version",
        "fingerprint",
        "input_fingerprint",
        "dataset",
        "counts",
        "complete",
        "created",
    ):
        assert key in attrs, key
    assert attrs["complete"] is True and attrs["format_version"] == C.FORMAT_VERSION
    assert attrs["classes"] == list(CLASSES)
    assert small_store.render_config == small_render_config
    assert attrs["counts"]["sequences"] == 30 and attrs["counts"]["frames"] == small_store.n_frames
    assert sum(attrs["counts"]["per_class"].values()) == 30
    fr = small_store.frames
    assert isinstance(fr, zarr.Array)
    assert fr.dtype == np.uint8 and fr.chunks == (300, 2, 64, 64)
    assert small_store.offsets.dtype == np.int64
    assert small_store.pav.dtype == np.float32 and small_store.pav.shape == (30, 8, 3)
    g = zarr.open_group(small_store.path, mode="r")
    assert g["labels"].dtype == np.int8 and g["offsets"].dtype == np.int64
    codecs = json.loads((small_store.path / "frames" / "zarr.json").read_text())["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "zstd"]
    assert not (small_store.path / "progress.json").exists()
    assert not (small_store.path / "frames" / "c").exists()  # flat "." chunk keys, no sharding
    n_chunks = -(-small_store.n_frames // 300)
    assert len(list((small_store.path / "frames").glob("c.*"))) == n_chunks


def test_load_frames_subset_and_index(small_store):
    idx = [5, 2, 3, 17]
    frames, offsets = small_store.load_frames(idx)
    assert offsets.tolist()[0] == 0 and len(offsets) == len(idx) + 1
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(frames[offsets[j] : offsets[j + 1]], small_store.sequence(i))
    sid = small_store.ids[4]
    assert small_store.index_of(sid) == 4
    np.testing.assert_array_equal(small_store.sequence(sid), small_store.sequence(4))
    with pytest.raises(KeyError):
        small_store.index_of("no-such-id")
    assert small_store.indices_of([small_store.ids[1], small_store.ids[3]]).tolist() == [1, 3]


# --------------------------------------------------------------------------------------------
# reuse and fingerprints
# --------------------------------------------------------------------------------------------


def test_second_build_reuses(small_cache, small_dataset, small_render_config):
    again = build_cache(CacheConfig(poses=small_dataset, render=small_render_config))
    assert again.reused is True
    assert again.path == small_cache.path and again.fingerprint == small_cache.fingerprint
    assert again.n_frames == small_cache.n_frames and again.bytes_on_disk > 0


@pytest.mark.parametrize(("batch", "overlap"), [(100, False), (130, True), (900, True)])
def test_batching_does_not_change_the_store(
    small_store, small_dataset, small_render_config, tmp_path, batch, overlap
):
    # batches of whole sequences rendered into two reused buffers, tails carried across chunks
    config = CacheConfig(
        poses=small_dataset,
        render=small_render_config,
        out=tmp_path / "b.zarr",
        batch_frames=batch,
        overlap=overlap,
    )
    store = open_cache(build_cache(config).path)
    np.testing.assert_array_equal(store.load_frames()[0], small_store.load_frames()[0])
    assert verify_cache(store.path).ok


def test_changed_sigma_is_another_store(small_cache, small_dataset, small_render_config):
    import dataclasses

    other = dataclasses.replace(small_render_config, sigma_limb=9.0)
    res = build_cache(CacheConfig(poses=small_dataset, render=other))
    assert res.reused is False
    assert res.path != small_cache.path and res.fingerprint != small_cache.fingerprint
    assert open_cache(res.path).render_config.sigma_limb == 9.0
    assert find_cache(other, poses=small_dataset) == res.path
    assert find_cache(small_render_config, poses=small_dataset) == small_cache.path


def test_changed_input_rebuilds_and_replaces(dataset_copy, tmp_path, small_render_config):
    from sconet.render import render_batch

    out = tmp_path / "s.zarr"
    first = build_cache(CacheConfig(poses=dataset_copy, out=out))
    assert first.reused is False and first.replaced is None
    target = _pose_files(dataset_copy)[3]
    with open(target, "rb") as f:
        arr = pickle.load(f)
    # same content written again: same fingerprint, reused
    with open(target, "wb") as f:
        pickle.dump(arr, f)
    assert build_cache(CacheConfig(poses=dataset_copy, out=out)).reused is True
    arr = np.array(arr, dtype=np.float32)
    arr[:, :, 0] += 7.0  # shift one sequence sideways
    arr[:, 13, 1] += 20.0  # and move a knee: the maps change
    with open(target, "wb") as f:
        pickle.dump(arr, f)
    second = build_cache(CacheConfig(poses=dataset_copy, out=out))
    assert second.reused is False
    assert second.fingerprint != first.fingerprint
    assert second.replaced and "changed" in second.replaced
    store = open_cache(out)
    assert store.fingerprint == second.fingerprint
    np.testing.assert_array_equal(
        store.load_frames()[0], render_batch(_load(dataset_copy).poses, small_render_config)
    )
    assert not list(tmp_path.glob(".s.zarr.old-*")) and not out.with_name("s.zarr.partial").exists()


def test_damaged_matching_store_is_rebuilt(small_dataset, tmp_path):
    out = tmp_path / "d.zarr"
    first = build_cache(CacheConfig(poses=small_dataset, out=out))
    shutil.rmtree(out / "labels")
    again = build_cache(CacheConfig(poses=small_dataset, out=out))
    assert again.reused is False and "damaged" in again.replaced
    assert again.fingerprint == first.fingerprint and verify_cache(out).ok


def test_refuses_to_replace_a_foreign_folder(small_dataset, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CacheError, match="precious"):
        build_cache(CacheConfig(poses=small_dataset, out=out))
    assert (out / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------------------------
# crash safety and resume
# --------------------------------------------------------------------------------------------

_KILLER = textwrap.dedent(
    """
    import itertools, os, signal, sys
    from pathlib import Path
    from sconet import cache, render
    from sconet.cache import build

    poses, out, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    nth, batch = int(sys.argv[4]), int(sys.argv[5])
    calls = itertools.count(1)  # next() is atomic under the GIL: safe from writer threads

    def maybe_die():
        if next(calls) == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    if where == "render":  # in the render thread, while the previous batch is being written
        orig = render.render_batch
        def render_batch(*a, **k):
            maybe_die()
            return orig(*a, **k)
        render.render_batch = render_batch
    else:  # in a writer thread, between two chunk files of one flush
        orig_write = build._write_chunk_file
        def write_chunk_file(*a, **k):
            maybe_die()
            return orig_write(*a, **k)
        build._write_chunk_file = write_chunk_file
    cache.build_cache(cache.CacheConfig(poses=poses, out=out, batch_frames=batch))
    print("finished")
    """
)


def _run_killer(
    poses: Path, out: Path, where: str, nth: int, batch: int = 100
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _KILLER, str(poses), str(out), where, str(nth), str(batch)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# "render": killed in the render thread (batch 6 of 80 frames) while batch 5 is being written;
# "write": killed in a writer thread while the second of two chunks of one flush is written.
@pytest.mark.parametrize(("where", "nth", "batch"), [("render", 6, 100), ("write", 4, 700)])
def test_kill9_mid_build_then_resume(small_dataset, small_store, tmp_path, where, nth, batch):
    out = tmp_path / "killed.zarr"
    proc = _run_killer(small_dataset, out, where, nth, batch)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "finished" not in proc.stdout
    # nothing at the final path, and the partial does not claim to be complete
    assert not out.exists()
    partial = out.with_name("killed.zarr.partial")
    assert partial.is_dir()
    attrs = json.loads((partial / "zarr.json").read_text())["attributes"]
    assert attrs["complete"] is False and "fingerprint" not in attrs
    progress = json.loads((partial / "progress.json").read_text())
    assert 0 < progress["frames_committed"] < small_store.n_frames
    assert progress["frames_committed"] % 300 == 0
    with pytest.raises(CacheError, match="killed.zarr"):
        open_cache(out)
    with pytest.raises(CacheError, match="incomplete"):
        open_cache(partial)
    assert find_cache(small_store.render_config, dataset="poses", root=tmp_path) is None

    seen: list[tuple[int, int]] = []
    # resumed in batches too: the first one starts inside a sequence, later ones carry tails
    config = CacheConfig(poses=small_dataset, out=out, batch_frames=batch)
    res = build_cache(config, progress=lambda d, t: seen.append((d, t)))
    assert res.reused is False and res.resumed_from == progress["frames_committed"]
    assert seen[0][0] == progress["frames_committed"] and seen[-1] == (res.n_frames, res.n_frames)
    assert not partial.exists()
    store = open_cache(out)
    assert store.fingerprint == small_store.fingerprint
    np.testing.assert_array_equal(store.load_frames()[0], small_store.load_frames()[0])
    assert verify_cache(out).ok
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]


def test_partial_with_other_fingerprint_is_discarded(dataset_copy, small_store, tmp_path):
    out = tmp_path / "x.zarr"
    proc = _run_killer(dataset_copy, out, "render", 6)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = out.with_name("x.zarr.partial")
    assert partial.is_dir()
    # the inputs change before the rerun: the partial must not be resumed
    target = _pose_files(dataset_copy)[0]
    with open(target, "rb") as f:
        arr = np.array(pickle.load(f), dtype=np.float32)
    arr[:, :, 1] += 3.0
    with open(target, "wb") as f:
        pickle.dump(arr, f)
    res = build_cache(CacheConfig(poses=dataset_copy, out=out))
    assert res.resumed_from == 0 and res.fingerprint != small_store.fingerprint
    assert verify_cache(out).ok


# --------------------------------------------------------------------------------------------
# verify and open
# --------------------------------------------------------------------------------------------


def test_verify_ok(small_cache):
    report = verify_cache(small_cache.path)
    assert report.ok and report.problems == [] and len(report) == 0
    assert report.chunks_checked == -(-small_cache.n_frames // 300)


def test_verify_finds_damaged_truncated_and_missing_chunks(store_copy):
    chunks = sorted((store_copy / "frames").glob("c.*"), key=lambda p: int(p.name.split(".")[1]))
    assert len(chunks) >= 4
    flipped, truncated, missing = chunks[0], chunks[1], chunks[3]
    data = bytearray(flipped.read_bytes())
    for k in range(len(data) // 3, len(data) // 3 + 16):
        data[k] ^= 0x5A
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[: len(truncated.read_bytes()) // 2])
    missing.unlink()
    report = verify_cache(store_copy)
    assert not report.ok
    text = "\n".join(report.problems)
    assert len(report.problems) == 3, text
    for name in (flipped.name, truncated.name, missing.name):
        assert name in text
    assert "chunk 0 " in text and "chunk 1 " in text and "chunk 3 " in text
    assert "missing" in text and "damaged" in text


def test_verify_finds_structural_problems(store_copy):
    meta_path = store_copy / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["counts"]["frames"] += 1
    meta_path.write_text(json.dumps(meta))
    (store_copy / "labels" / "c.0").unlink()
    text = "\n".join(verify_cache(store_copy).problems)
    assert "counts" in text and "labels" in text


def _edit_attrs(store: Path, **changes) -> None:
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"].update(changes)
    meta_path.write_text(json.dumps(meta))


def test_open_cache_refuses_bad_stores(store_copy, tmp_path):
    with pytest.raises(CacheError, match="nothing.zarr"):
        open_cache(tmp_path / "nothing.zarr")
    _edit_attrs(store_copy, complete=False)
    with pytest.raises(CacheError, match="incomplete") as err:
        open_cache(store_copy)
    assert str(store_copy) in str(err.value)
    assert not verify_cache(store_copy).ok
    _edit_attrs(store_copy, complete=True, format_version=999)
    with pytest.raises(CacheError, match="format version"):
        open_cache(store_copy)
    _edit_attrs(store_copy, format_version=C.FORMAT_VERSION)
    open_cache(store_copy)
    shutil.rmtree(store_copy / "pav")
    with pytest.raises(CacheError, match="pav"):
        open_cache(store_copy)
    (store_copy / "zarr.json").write_text("{not json")
    with pytest.raises(CacheError, match=str(store_copy.name)):
        open_cache(store_copy)


# --------------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------------


def test_bad_pose_file_stops_with_the_file_named(dataset_copy, tmp_path):
    from sconet.data import PoseError

    bad = _pose_files(dataset_copy)[4]
    with open(bad, "wb") as f:
        pickle.dump(np.full((10, 17, 3), np.nan, dtype=np.float32), f)
    out = tmp_path / "bad.zarr"
    with pytest.raises(PoseError) as err:
        build_cache(CacheConfig(poses=dataset_copy, out=out))
    assert str(bad) in str(err.value)
    assert not out.exists() and not out.with_name("bad.zarr.partial").exists()


def test_skip_bad_writes_report(dataset_copy, tmp_path):
    bad = _pose_files(dataset_copy)[4]
    bad.write_bytes(b"this is not a pickle")
    out = tmp_path / "skip.zarr"
    res = build_cache(CacheConfig(poses=dataset_copy, out=out, skip_bad=True))
    assert res.n_sequences == 29
    assert [p for p, _ in res.skipped] == [str(bad)]
    assert res.skipped_report is not None and res.skipped_report.parent == out.parent
    report = json.loads(res.skipped_report.read_text())
    assert report["skipped"][0]["path"] == str(bad) and report["skipped"][0]["reason"]
    store = open_cache(out)
    assert store.n_sequences == 29 and bad.parts[-4] not in store.ids
    assert store.attrs["skipped"][0]["path"] == str(bad)


def test_one_class_dataset_and_short_last_chunk(tmp_path):
    from sconet.data.synth import SynthConfig, write_synthetic

    # all labels 0 (an all-zero labels chunk must still be written) and 5 x 70 = 350 frames
    # (the last frames chunk holds 50 frames)
    root = write_synthetic(
        tmp_path / "one", SynthConfig(n_sequences=5, frames=70, class_totals=(5, 0, 0)), ratios=()
    )
    res = build_cache(CacheConfig(poses=root, out=tmp_path / "one.zarr", batch_frames=120))
    store = open_cache(res.path)
    assert store.labels.tolist() == [0] * 5 and store.n_frames == 350
    assert verify_cache(res.path).ok
    assert (res.path / "labels" / "c.0").is_file()
    np.testing.assert_array_equal(store.load_frames()[0], np.asarray(store.frames[:]))
    np.testing.assert_array_equal(store.load_frames([4])[0], np.asarray(store.frames[280:350]))


def test_split_is_recorded(dataset_copy, tmp_path):
    split = dataset_copy / "Scoliosis1K_112.json"
    res = build_cache(CacheConfig(poses=dataset_copy, out=tmp_path / "sp.zarr", split=split))
    assert open_cache(res.path).attrs["split"] == "Scoliosis1K_112" and res.warnings == []
    # a split naming ids the dataset lacks is reported, not fatal
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"TRAIN_SET": ["00000", "99998"], "TEST_SET": ["99999"]}))
    res2 = build_cache(CacheConfig(poses=dataset_copy, out=tmp_path / "sp.zarr", split=other))
    assert res2.reused and any("not in the dataset" in w for w in res2.warnings)


# --------------------------------------------------------------------------------------------
# find + preview
# --------------------------------------------------------------------------------------------


def test_find_cache(small_cache, small_dataset, small_render_config, cache_root_dir):
    assert find_cache(small_render_config, poses=small_dataset) == small_cache.path
    assert find_cache(small_render_config, poses=small_dataset, root=cache_root_dir) == small_cache.path
    # the design document's positional order
    assert find_cache(cache_root_dir, small_render_config, small_cache.dataset) == small_cache.path
    assert find_cache(small_render_config, poses=small_dataset.parent / "elsewhere") is None


def test_contact_sheet(small_store, tmp_path):
    from PIL import Image

    from sconet.preview import contact_sheet

    png = contact_sheet(small_store, small_store.ids[2], tmp_path / "sheet.png", frames=8, scale=2)
    img = Image.open(png)
    assert img.format == "PNG" and img.width >= 8 * 128 and img.height >= 3 * 128
    arr = np.asarray(img.convert("RGB"))
    assert (arr[..., 2] > 200).any() and (arr[..., 0] > 200).any()  # blue limbs, orange joints
    png2 = contact_sheet(small_store.path, 0, tmp_path / "sub" / "s.png", frames=4)
    assert png2.exists()


def test_build_from_a_registered_layout(tmp_path, monkeypatch, small_dataset):
    """A store built through another layout holds that layout's sequences (CacheConfig.layout)."""
    from sconet.data import LAYOUTS, SequenceRecord, scan_dataset

    flat = tmp_path / "flat"
    originals = scan_dataset(small_dataset)[:4]
    for r in originals:  # <root>/<label>/<id>.pkl
        (flat / r.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(r.path, flat / r.label / f"{r.id}.pkl")
    monkeypatch.setitem(
        LAYOUTS,
        "flat",
        lambda root: [SequenceRecord(p.stem, p.parent.name, "v", p) for p in root.glob("*/*.pkl")],
    )
    res = build_cache(CacheConfig(poses=flat, layout="flat", out=tmp_path / "flat.zarr", threads=1))
    store = open_cache(res.path)
    assert store.ids == [r.id for r in originals] and store.views == ["v"] * 4
    assert [store.label_name(i) for i in range(4)] == [r.label for r in originals]
    with pytest.raises(ValueError, match="unknown dataset layout"):
        build_cache(CacheConfig(poses=flat, layout="nested", out=tmp_path / "other.zarr"))
    assert not (tmp_path / "other.zarr").exists()


def test_input_fingerprint_covers_every_part_of_a_sequence(tmp_path):
    """A relabelled, renamed, re-viewed, reshaped or edited sequence is another input; order is not."""
    from dataclasses import replace

    from sconet.data import SequenceRecord

    rng = np.random.default_rng(0)
    poses = [rng.random((5, 17, 3), dtype=np.float32) for _ in range(2)]
    recs = [
        SequenceRecord("00000", "negative", "000_180", tmp_path / "a.pkl"),
        SequenceRecord("00001", "positive", "000_000", tmp_path / "b.pkl"),
    ]
    base = C.input_fingerprint(recs, poses)
    assert C.input_fingerprint(recs[::-1], poses[::-1]) == base
    assert C.input_fingerprint([recs[0], replace(recs[1], path=tmp_path / "c.pkl")], poses) == base
    for changed in ({"label": "neutral"}, {"id": "00002"}, {"view": "000_090"}):
        assert C.input_fingerprint([recs[0], replace(recs[1], **changed)], poses) != base, changed
    edited = poses[1].copy()
    edited[2, 3, 0] += 1e-3
    assert C.input_fingerprint(recs, [poses[0], edited]) != base
    assert C.input_fingerprint(recs, [poses[0], poses[1].reshape(17, 5, 3)]) != base

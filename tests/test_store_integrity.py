"""Store integrity end to end (issue 18, cases 4, 5 and 12): what a reuse checks, `--rebuild`,
the inputs fingerprint `train --poses` applies, edited metadata found by `open_cache` and
`cache verify`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from sconet.cache import CacheConfig, CacheError, build_cache, open_cache, verify_cache


def _manifest(store: Path) -> dict | None:
    from sconet.cache.integrity import read_manifest

    return read_manifest(store)


def _rehashed(store: Path) -> int:
    from sconet.cache import check_store_files

    return check_store_files(store, open_cache(store).attrs).rehashed


def _stale(store, poses: Path) -> str | None:
    from sconet.cache import stale_inputs

    return stale_inputs(store, poses)


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def _flip(path: Path, at: int = 100, keep_times: bool = False) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_times:  # an edit that puts the old modification time back
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def built(small_dataset, tmp_path) -> Path:
    return build_cache(CacheConfig(poses=small_dataset, out=tmp_path / "s.zarr")).path


# ---------------------------------------------------------------------------------------------
# case 4: a damaged store is not reused
# ---------------------------------------------------------------------------------------------


def test_manifest_lists_every_file_and_a_reuse_reads_none(built, small_dataset):
    doc = _manifest(built)
    assert doc is not None
    chunks = sorted(p.relative_to(built).as_posix() for p in (built / "frames").glob("c.*"))
    assert len(chunks) == 4 and set(chunks) <= set(doc["files"])
    assert {"labels/c.0", "offsets/c.0", "pav/c.0.0.0", "frames/zarr.json"} <= set(doc["files"])
    again = build_cache(CacheConfig(poses=small_dataset, out=built))
    assert again.reused and again.replaced is None
    assert _rehashed(built) == 0


@pytest.mark.parametrize("keep_times", [False, True], ids=["edited", "edited-mtime-restored"])
def test_flipped_byte_in_a_chunk_is_rebuilt_not_reused(built, small_dataset, keep_times):
    chunk = built / "frames" / "c.1.0.0.0"
    _flip(chunk, keep_times=keep_times)
    again = build_cache(CacheConfig(poses=small_dataset, out=built))
    assert not again.reused
    assert "damaged" in again.replaced and "frames/c.1.0.0.0" in again.replaced
    assert verify_cache(built).ok
    assert build_cache(CacheConfig(poses=small_dataset, out=built)).reused


def test_touched_store_is_reused_and_its_new_stat_recorded(built, small_dataset):
    for chunk in (built / "frames").glob("c.*"):
        os.utime(chunk)  # same bytes, new times: read once, then remembered
    again = build_cache(CacheConfig(poses=small_dataset, out=built))
    assert again.reused
    assert _rehashed(built) == 0


def test_check_store_files_names_each_problem_and_counts_its_reads(built):
    from sconet.cache import check_store_files

    attrs = open_cache(built).attrs
    clean = check_store_files(built, attrs)
    assert (clean.problems, clean.manifest, clean.rehashed, clean.refreshed) == ([], True, 0, False)
    touched = [built / "frames" / "c.0.0.0.0", built / "labels" / "c.0"]
    for path in touched:
        os.utime(path)  # new stat, same bytes: read, found unchanged, the new stat recorded
    seen = check_store_files(built, attrs, refresh=False)
    assert (seen.problems, seen.rehashed, seen.refreshed) == ([], 2, False)
    assert check_store_files(built, attrs).refreshed is True  # refresh (the default) records them
    assert check_store_files(built, attrs).rehashed == 0
    (built / "frames" / "c.0.0.0.0").unlink()
    grown = built / "frames" / "c.1.0.0.0"
    size = grown.stat().st_size
    grown.write_bytes(grown.read_bytes() + b"\0")
    _flip(built / "frames" / "c.2.0.0.0")
    bad = check_store_files(built, {**attrs, "note": "edited"})
    assert bad.problems == [
        f"{built}: the root attributes (zarr.json) changed since the store was built",
        f"{built}: file frames/c.0.0.0.0 is missing",
        f"{built}: file frames/c.1.0.0.0 changed since the store was built (size {size} -> {size + 1} bytes)",
        f"{built}: file frames/c.2.0.0.0 changed since the store was built (same size, other bytes)",
    ]
    assert bad.refreshed is False


def test_swapped_chunk_files_are_found(built, small_dataset):
    a, b = built / "frames" / "c.0.0.0.0", built / "frames" / "c.1.0.0.0"
    tmp = a.with_name("swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    report = verify_cache(built)  # both decode fine (valid zstd frames): only the digests tell
    assert not report.ok and any("frames/c.0.0.0.0" in p for p in report.problems)
    again = build_cache(CacheConfig(poses=small_dataset, out=built))
    assert not again.reused and "damaged" in again.replaced


def test_store_without_manifest_is_verified_once_then_given_one(built, small_dataset):
    (built / "integrity.json").unlink()
    again = build_cache(CacheConfig(poses=small_dataset, out=built))
    assert again.reused and _manifest(built) is not None
    (built / "integrity.json").unlink()
    _flip(built / "frames" / "c.2.0.0.0")
    third = build_cache(CacheConfig(poses=small_dataset, out=built))
    assert not third.reused and "frames chunk 2" in third.replaced


def test_cli_rebuilds_a_damaged_store_naming_it_and_rebuild_flag(sconet_cli, small_dataset, tmp_path):
    out = tmp_path / "cli.zarr"
    assert build_cache(CacheConfig(poses=small_dataset, out=out)).path == out
    _flip(out / "frames" / "c.0.0.0.0", at=200)
    proc = sconet_cli("cache", "--poses", small_dataset, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "rebuilt: the existing store is damaged" in proc.stdout and "frames/c.0.0.0.0" in proc.stdout
    _no_traceback(proc)
    forced = sconet_cli("cache", "--poses", small_dataset, "--out", out, "--rebuild")
    assert forced.returncode == 0 and "rebuilt: --rebuild was given" in forced.stdout, forced.stderr
    reused = sconet_cli("cache", "--poses", small_dataset, "--out", out)
    assert "reused existing store" in reused.stdout


# ---------------------------------------------------------------------------------------------
# case 5: the inputs fingerprint, for `cache` and `train --poses`
# ---------------------------------------------------------------------------------------------


def _relabel(root: Path, seq_id: str) -> tuple[str, str]:
    (label_dir,) = [p for p in (root / seq_id).iterdir() if p.is_dir()]
    new = {"Negative": "Positive", "Positive": "Negative", "Neutral": "Positive"}[label_dir.name]
    label_dir.rename(label_dir.with_name(new))
    return label_dir.name.lower(), new.lower()


def test_stale_inputs_names_a_relabelled_sequence(dataset_copy, tmp_path):
    store = open_cache(build_cache(CacheConfig(poses=dataset_copy, out=tmp_path / "r.zarr")).path)
    assert _stale(store, dataset_copy) is None
    old, new = _relabel(dataset_copy, "00000")
    problem = _stale(store, dataset_copy)
    assert problem is not None and "00000/" in problem and f"is {new}" in problem and f"but {old}" in problem


def test_stale_inputs_reads_content_only_when_the_listing_moved(dataset_copy, tmp_path):
    store = open_cache(build_cache(CacheConfig(poses=dataset_copy, out=tmp_path / "c.zarr")).path)
    pkl = sorted(dataset_copy.glob("00001/*/*/*.pkl"))[0]
    os.utime(pkl)  # new date, same arrays: current, and the new listing is recorded
    before = _manifest(store.path)["inputs"]["listing"]
    assert _stale(store, dataset_copy) is None
    assert _manifest(store.path)["inputs"]["listing"] != before
    import pickle

    arr = pickle.loads(pkl.read_bytes())
    arr[0, 0, 0] += 1.0
    pkl.write_bytes(pickle.dumps(arr))
    assert "content of the pose files changed" in _stale(store, dataset_copy)
    rebuilt = build_cache(CacheConfig(poses=dataset_copy, out=store.path))
    assert not rebuilt.reused and "content of the pose files changed" in rebuilt.replaced


def test_pose_source_written_after_the_build_makes_the_store_stale(dataset_copy, tmp_path):
    built = build_cache(CacheConfig(poses=dataset_copy, out=tmp_path / "p.zarr"))
    before = open_cache(built.path).pose_source
    source = {"backend": "onnx", "model": "/models/rtmpose-m.onnx", "version": "onnxruntime 1.32"}
    (dataset_copy / "pose_source.json").write_text(json.dumps({"pose_source": source}))
    problem = _stale(open_cache(built.path), dataset_copy)  # what `train --poses` reports
    assert problem is not None and str(dataset_copy / "pose_source.json") in problem
    assert "onnx (onnxruntime 1.32, rtmpose-m.onnx)" in problem
    again = build_cache(CacheConfig(poses=dataset_copy, out=built.path))
    assert not again.reused and "pose source changed" in again.replaced
    assert open_cache(built.path).pose_source == source != before  # the provenance checkpoints copy
    assert build_cache(CacheConfig(poses=dataset_copy, out=built.path)).reused


def test_train_poses_refuses_a_store_built_before_a_label_change(sconet_cli, dataset_copy, tmp_path):
    first = sconet_cli("cache", "--poses", dataset_copy)
    assert first.returncode == 0, first.stderr
    store = first.stdout.split("built store: ")[1].splitlines()[0].strip()
    old, new = _relabel(dataset_copy, "00000")
    args = ["train", "--recipe", "demo-cpu", "--iters", "1", "--device", "cpu", "--poses", dataset_copy]
    args += ["--split", dataset_copy / "Scoliosis1K_112.json", "--out", tmp_path / "run", "--ledger", "none"]
    proc = sconet_cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {store}: the pose files changed") and "00000/" in line
    assert f"is {new}" in line and "sconet cache --poses" in line
    _no_traceback(proc)
    assert not (tmp_path / "run" / "last.pt").exists()
    rebuilt = sconet_cli("cache", "--poses", dataset_copy)
    assert "rebuilt: the pose files changed" in rebuilt.stdout, rebuilt.stderr
    assert open_cache(store).label_name(0) == new


def test_train_with_cache_and_poses_checks_them_too(dataset_copy, tmp_path):
    from _helpers import tiny_config
    from sconet.training import TrainError, apply_overrides, prepare_data

    path = build_cache(CacheConfig(poses=dataset_copy, out=tmp_path / "t.zarr")).path
    config = tiny_config(path, dataset_copy / "Scoliosis1K_112.json", tmp_path / "run")
    config = apply_overrides(config, [("data", "poses", str(dataset_copy))])
    assert prepare_data(config, log=lambda m: None).store.path == path
    _relabel(dataset_copy, "00002")
    with pytest.raises(TrainError, match=r"t\.zarr: the pose files changed.*00002/"):
        prepare_data(config, log=lambda m: None)


# ---------------------------------------------------------------------------------------------
# case 12: edited metadata, --representation with --cache
# ---------------------------------------------------------------------------------------------


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_reordered_or_renamed_ids_are_found(store_copy):
    _edit_json(store_copy / "zarr.json", lambda d: d["attributes"]["ids"].reverse())
    report = verify_cache(store_copy)
    assert not report.ok and any("not in store order" in p for p in report.problems)
    assert any("root attributes" in p for p in report.problems)
    with pytest.raises(CacheError, match="not in store order"):
        open_cache(store_copy)
    # still sorted, another name: the index digest tells
    _edit_json(store_copy / "zarr.json", lambda d: d["attributes"]["ids"].reverse())
    _edit_json(store_copy / "zarr.json", lambda d: d["attributes"]["ids"].__setitem__(-1, "99999"))
    with pytest.raises(CacheError, match="index digest"):
        open_cache(store_copy)
    assert any("index digest" in p for p in verify_cache(store_copy).problems)


def test_chunk_size_edited_to_1e9_is_one_line(store_copy, sconet_cli, small_split, tmp_path):
    def edit(doc):
        doc["chunk_grid"]["configuration"]["chunk_shape"][0] = 1_000_000_000

    _edit_json(store_copy / "frames" / "zarr.json", edit)
    with pytest.raises(CacheError, match=r"frames has chunk shape \[1000000000, 2, 64, 64\]"):
        open_cache(store_copy)
    proc = sconet_cli("cache", "verify", store_copy)
    assert proc.returncode == 1 and "chunk shape [1000000000" in proc.stderr
    _no_traceback(proc)
    assert "MemoryError" not in proc.stderr
    train = sconet_cli(
        "train", "--recipe", "demo-cpu", "--cache", store_copy, "--split", small_split,
        "--out", tmp_path / "run", "--device", "cpu", "--ledger", "none",
    )  # fmt: skip
    assert train.returncode == 2
    (line,) = train.stderr.strip().splitlines()
    assert line.startswith(f"error: {store_copy}: frames has chunk shape")
    _no_traceback(train)


def test_representation_disagreeing_with_cache_is_refused(sconet_cli, small_cache, small_split, tmp_path):
    base = ["train", "--recipe", "demo-cpu", "--cache", small_cache.path, "--split", small_split]
    refused = sconet_cli(*base, "--representation", "full-body", "--print-config")
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert str(small_cache.path) in line and "'body-only'" in line and "--representation full-body" in line
    agreed = sconet_cli(*base, "--representation", "body-only", "--print-config")
    assert agreed.returncode == 0, agreed.stderr


def test_recipe_representation_ignored_by_cache_is_warned(small_cache, small_split, tmp_path):
    from _helpers import tiny_config
    from sconet.training import apply_overrides, prepare_data

    config = tiny_config(small_cache.path, small_split, tmp_path / "run")
    config = apply_overrides(config, [("data", "representation", "head-lite")])
    messages = prepare_data(config, log=lambda m: None).messages
    assert any("'head-lite' is ignored" in m and "'body-only'" in m for m in messages)


def test_split_with_byte_order_mark_is_read(small_split, tmp_path):
    from sconet.data import load_split

    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + small_split.read_bytes())
    split = load_split(bom)
    assert split.train_ids == load_split(small_split).train_ids and split.name == "bom"


def test_resumed_chunks_are_checked_before_the_manifest_vouches_for_them(small_dataset, tmp_path):
    from test_cache import _run_killer

    out = tmp_path / "k.zarr"
    proc = _run_killer(small_dataset, out, "write", 4, 700)  # kill -9 after three chunk files
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = out.with_name("k.zarr.partial")
    _flip(partial / "frames" / "c.1.0.0.0", at=300)
    with pytest.raises(CacheError, match=r"frames chunk 1 .*--rebuild"):
        build_cache(CacheConfig(poses=small_dataset, out=out))
    fresh = build_cache(CacheConfig(poses=small_dataset, out=out, rebuild=True))
    assert not fresh.reused and fresh.resumed_from == 0 and verify_cache(out).ok

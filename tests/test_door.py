"""Validation at the door (issue 18, cases 2, 3 and 11): poses that validate but cannot be
rendered or measured, and dataset folders `--skip-bad` must skip, found before any store is
written, with the file named."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np

from _helpers import STANDING
from sconet.cache import open_cache, verify_cache
from sconet.data import PoseError, scan_dataset
from sconet.render import RenderConfig


def _walker(frames: int = 12) -> np.ndarray:
    pose = np.zeros((frames, 17, 3), np.float32)
    pose[..., :2] = STANDING[None] + np.linspace(0, 30, frames)[:, None, None]
    pose[..., 0] += 200.0
    pose[..., 1] += 300.0
    pose[..., 2] = 0.9
    return pose


def _tiny_scale() -> np.ndarray:
    """Finite, valid, but y in [0, 1e-30] and x near 1e10 (issue 18, case 2)."""
    rng = np.random.default_rng(0)
    pose = np.ones((12, 17, 3), np.float32)
    pose[..., 0] = rng.uniform(1e10, 2e10, (12, 17))
    pose[..., 1] = rng.uniform(0, 1e-30, (12, 17))
    return pose


def test_pose_problem_finds_each_kind():
    from sconet.render.checks import pose_problem

    config = RenderConfig()
    assert pose_problem(_walker(), config) is None
    assert "no observed keypoint" in pose_problem(np.zeros((5, 17, 3), np.float32), config)
    assert "no observed keypoint" in pose_problem(
        np.zeros((5, 17, 3), np.float32), RenderConfig(impute="none")
    )
    flat = _walker()
    flat[..., 1] = 250.0
    assert "no frame can be normalised" in pose_problem(flat, config)
    one_flat = _walker()
    one_flat[3, :, 1] = 250.0  # one empty frame among good ones: rendered empty, as documented
    assert pose_problem(one_flat, config) is None
    assert "frame 0 cannot be normalised" in pose_problem(_tiny_scale(), config)
    # normalisable for the renderer (a zero-confidence keypoint spans the height) but the PAV,
    # which uses the valid keypoints only, divides by their tiny extent
    pav_only = _tiny_scale()
    pav_only[:, 0, 0] = 1e10
    pav_only[:, 0, 1] = 400.0
    pav_only[:, 0, 2] = 0.0
    assert "postural asymmetry values are not finite" in pose_problem(pav_only, config)


def _replace(root: Path, seq_id: str, pose: np.ndarray) -> Path:
    (pkl,) = sorted(root.glob(f"{seq_id}/*/*/*.pkl"))
    pkl.write_bytes(pickle.dumps(pose, protocol=4))
    return pkl


def test_cache_names_bad_pose_files_before_writing_anything(sconet_cli, dataset_copy, tmp_path):
    tiny = _replace(dataset_copy, "00004", _tiny_scale())
    zeros = _replace(dataset_copy, "00007", np.zeros((40, 17, 3), np.float32))
    out = tmp_path / "door.zarr"
    proc = sconet_cli("cache", "--poses", dataset_copy, "--out", out)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {tiny}: frame 0 cannot be normalised")
    assert not out.exists() and not out.with_name("door.zarr.partial").exists()

    proc = sconet_cli("cache", "--poses", dataset_copy, "--out", out, "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 2 bad file(s)" in proc.stderr
    assert f"{tiny}: frame 0 cannot be normalised" in proc.stderr
    assert f"{zeros}: no observed keypoint" in proc.stderr
    report = json.loads(out.with_name("door.skipped.json").read_text())
    assert sorted(e["path"] for e in report["skipped"]) == sorted([str(tiny), str(zeros)])
    store = open_cache(out)
    assert store.n_sequences == 28 and "00004" not in store.ids and "00007" not in store.ids
    assert np.isfinite(store.pav).all() and verify_cache(out).ok
    again = sconet_cli("cache", "--poses", dataset_copy, "--out", out, "--skip-bad")
    assert "reused" in again.stdout and "skipped 2 bad file(s)" in again.stderr
    plain = sconet_cli("cache", "--poses", dataset_copy, "--out", out)  # reuse keeps the rule
    assert plain.returncode == 2 and str(tiny) in plain.stderr and "--skip-bad" in plain.stderr


def test_skip_bad_skips_folder_problems(sconet_cli, dataset_copy, tmp_path):
    (label,) = [p for p in (dataset_copy / "00001").iterdir() if p.is_dir()]
    typo = label.rename(label.with_name("Postive"))
    (view,) = [p for p in (dataset_copy / "00002").glob("*/*") if p.is_dir()]
    loop = view.parent / "loop"
    loop.symlink_to("loop")  # a link to itself
    (pkl,) = view.glob("*.pkl")
    pkl.unlink()
    pkl.symlink_to(pkl.name)  # the pose file itself loops
    up = dataset_copy / "00003" / "Negative" / "back"
    up.parent.mkdir(parents=True, exist_ok=True)
    up.symlink_to("..")  # a view folder that points at its own id folder

    out = tmp_path / "f.zarr"
    proc = sconet_cli("cache", "--poses", dataset_copy, "--out", out)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {typo}: unknown label folder 'Postive'")
    proc = sconet_cli("cache", "--poses", dataset_copy, "--out", out, "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    report = {
        e["path"]: e["reason"] for e in json.loads(out.with_name("f.skipped.json").read_text())["skipped"]
    }
    assert "unknown label folder 'Postive'" in report[str(typo)]
    assert "symbolic link loop" in report[str(loop)]
    assert "symbolic link loop" in report[str(pkl)]
    assert "symbolic link loop" in report[str(up)] and "ancestor" in report[str(up)]
    assert open_cache(out).n_sequences == 28 and "skipped 4 bad file(s)" in proc.stderr


def _in_child_without_privileges(fn):
    """``fn()`` run in a forked child under an unprivileged uid (root reads every folder)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            data = pickle.dumps(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - report anything to the parent
            data = pickle.dumps(("error", repr(exc)))
        os.write(w, data)
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    status, value = pickle.loads(b"".join(chunks))
    assert status == "ok", value
    return value


def test_unreadable_folder_is_reported_or_skipped(small_dataset):
    base = Path(tempfile.mkdtemp(prefix="sconet-door-"))
    try:
        os.chmod(base, 0o755)
        root = base / "poses"
        shutil.copytree(small_dataset, root)
        for p in [root, *root.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        locked = next(p for p in (root / "00006").iterdir() if p.is_dir())
        os.chmod(locked, 0o000)

        def scan():
            skipped: list = []
            ids = [r.id for r in scan_dataset(root, skipped=skipped)]
            try:
                scan_dataset(root)
                strict = None
            except PoseError as exc:
                strict = str(exc)
            return ids, skipped, strict

        ids, skipped, strict = _in_child_without_privileges(scan)
        assert "00006" not in ids and len(ids) == 29
        assert skipped == [(str(locked), "cannot list folder (Permission denied)")]
        assert strict == f"{locked}: cannot list folder (Permission denied)"
    finally:
        for p in base.rglob("*"):
            if p.is_dir():
                os.chmod(p, 0o755)
        shutil.rmtree(base)

"""A dataset from videos: the manifest, the Scoliosis1K layout, parallel workers, resuming
(also after ``kill -9``), the per-video report, and the errors of a bad manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _video_helpers import AWAY, need, need_blazepose, read_frames, vtest, write_clip
from sconet.data import load_pose_file, scan_dataset
from sconet.video import (
    ExtractConfig,
    ManifestError,
    jobs_from_manifest,
    jobs_from_videos,
    read_sidecar,
    run_jobs,
)

ROWS = [
    ("00001", "Positive", "000_180"),
    ("00001", "positive", "000_090"),
    ("00002", "negative", "000_180"),
    ("00003", "NEUTRAL", "000_180"),
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Four short real clips (the woman walking away, cropped to her region, from four starts)
    and a manifest listing them with relative paths."""
    need_blazepose()
    need("cv2")
    folder = tmp_path_factory.mktemp("videos")
    x0, y0, x1, y1 = AWAY.roi
    frames = [f[y0:y1, x0:x1] for f in read_frames(vtest(), AWAY.start, 57)]
    for k in range(4):
        write_clip(folder / f"walk{k}.avi", frames[15 * k : 15 * k + 12])
    lines = ["id,label,view,video"] + [
        f"{i},{lab},{view},walk{k}.avi" for k, (i, lab, view) in enumerate(ROWS)
    ]
    (folder / "videos.csv").write_text("\n".join(lines) + "\n")
    return folder


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*.pkl"))}


def test_manifest_dataset_in_parallel_then_reused(clips, tmp_path):
    out = tmp_path / "dataset"
    jobs = jobs_from_manifest(clips / "videos.csv", out)
    assert [j.out.relative_to(out).as_posix() for j in jobs] == [
        "00001/Positive/000_180/000_180.pkl",
        "00001/Positive/000_090/000_090.pkl",
        "00002/Negative/000_180/000_180.pkl",
        "00003/Neutral/000_180/000_180.pkl",
    ]
    run = run_jobs(jobs, ExtractConfig(), out, workers=2, dataset=True)
    assert [e["status"] for e in run.entries] == ["extracted"] * 4, run.entries
    assert all(e["detection_rate"] > 0.8 and e["frames"] == 12 for e in run.entries)
    records = scan_dataset(out)  # the readers take the layout as it is
    assert [(r.id, r.label, r.view) for r in records] == [
        ("00001", "positive", "000_090"),
        ("00001", "positive", "000_180"),
        ("00002", "negative", "000_180"),
        ("00003", "neutral", "000_180"),
    ]
    for r in records:
        arr = load_pose_file(r.path)
        assert arr.shape == (12, 17, 3) and np.abs(arr).sum() > 0
        assert read_sidecar(r.path)["pose_source"]["backend"] == "blazepose"
    source = json.loads((out / "pose_source.json").read_text())
    assert source["pose_source"]["version"] == "mediapipe 0.10.21"
    report = json.loads((out / "pose_report.json").read_text())
    assert report["extracted"] == 4 and report["failed"] == 0 and len(report["entries"]) == 4
    # sconet cache reads the dataset unchanged and records its pose source
    from sconet.cache import CacheConfig, build_cache, open_cache

    store = open_cache(build_cache(CacheConfig(poses=out, out=tmp_path / "store.zarr")).path)
    assert store.ids == ["00001", "00001", "00002", "00003"] and store.pose_source == source["pose_source"]
    before = _mtimes(out)
    # the same run again: nothing is extracted, nothing rewritten
    again = run_jobs(jobs, ExtractConfig(), out, workers=2, dataset=True)
    assert [e["status"] for e in again.entries] == ["reused"] * 4
    assert _mtimes(out) == before
    # another setting: every file is extracted again
    other = run_jobs(jobs[:1], ExtractConfig(min_detection_rate=0.4), out, workers=1, dataset=True)
    assert [e["status"] for e in other.entries] == ["extracted"]
    assert read_sidecar(jobs[0].out)["extract"]["min_detection_rate"] == 0.4


def test_failures_are_reported_and_the_others_go_on(clips, tmp_path):
    broken = tmp_path / "broken.avi"
    broken.write_bytes((clips / "walk0.avi").read_bytes()[:3000])
    jobs = jobs_from_videos([clips / "walk1.avi", broken, clips / "walk2.avi"], tmp_path / "out", fmt=".npy")
    run = run_jobs(jobs, ExtractConfig(), tmp_path / "out", workers=1)
    assert [e["status"] for e in run.entries] == ["extracted", "failed", "extracted"]
    assert run.failed[0]["error"].startswith(f"{broken}: ")
    assert not (tmp_path / "out" / "broken.npy").exists()
    assert load_pose_file(tmp_path / "out" / "walk2.npy").shape == (12, 17, 3)


_KILLABLE = """
import sys
from pathlib import Path
from sconet.video import ExtractConfig, jobs_from_manifest, run_jobs
jobs = jobs_from_manifest(sys.argv[1], sys.argv[2])
run_jobs(jobs, ExtractConfig(), sys.argv[2], workers=1, dataset=True)
"""


def test_resumes_after_kill_9(clips, tmp_path):
    out = tmp_path / "dataset"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, str(clips / "videos.csv"), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = out / "00001/Positive/000_180/000_180.pkl.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first video was never finished"
    done_before = {p for p in out.rglob("*.pkl") if read_sidecar(p) is not None}
    assert 1 <= len(done_before) < 4  # killed part-way
    jobs = jobs_from_manifest(clips / "videos.csv", out)
    run = run_jobs(jobs, ExtractConfig(), out, workers=1, dataset=True)
    status = {e["pose_file"]: e["status"] for e in run.entries}
    assert all(status[str(p)] == "reused" for p in done_before)
    assert sum(s == "extracted" for s in status.values()) == 4 - len(done_before)
    assert not list(out.rglob(".*.tmp"))  # no temporary file left behind
    for j in jobs:  # every file complete and matching its sidecar
        assert read_sidecar(j.out) is not None and load_pose_file(j.out).shape == (12, 17, 3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,label,video\n1,positive,a.avi\n", "line 1: the header lacks column(s) view"),
        ("id,label,view,video\n00001,sick,000_180,walk0.avi\n", "line 2: unknown label 'sick'"),
        (
            "id,label,view,video\n00001,positive,000_180,walk0.avi\n00001,negative,000_090,walk1.avi\n",
            "line 3: id 00001 has two labels: Positive and Negative",
        ),
        (
            "id,label,view,video\n00001,positive,000_180,walk0.avi\n00001,positive,000_180,walk1.avi\n",
            "line 3: id 00001 view 000_180 already on line 2",
        ),
        (
            "id,label,view,video\n../up,positive,000_180,walk0.avi\n",
            "line 2: id '../up' is not a plain folder name",
        ),
        ("id,label,view,video\n00001,positive,000_180,nowhere.avi\n", "line 2: video file not found: "),
        ("id,label,view,video,roi\n00001,positive,000_180,walk0.avi,1 2 3\n", "line 2: region of interest"),
        ("id,label,view,video\n", "no videos listed"),
    ],
)
def test_bad_manifests_name_file_and_line(clips, tmp_path, text, message):
    csv = clips / f"bad{abs(hash(text))}.csv"
    csv.write_text(text)
    with pytest.raises(ManifestError) as err:
        jobs_from_manifest(csv, tmp_path)
    assert str(err.value).startswith(f"{csv}: ") and message in str(err.value)


def test_manifest_roi_column(clips, tmp_path):
    csv = clips / "roi.csv"
    csv.write_text("id,label,view,video,roi\n00001,positive,000_180,walk0.avi,0 0 200 276\n")
    jobs = jobs_from_manifest(csv, tmp_path)
    assert jobs[0].roi == (0, 0, 200, 276)
    run = run_jobs(jobs, ExtractConfig(), tmp_path, workers=1, dataset=True)
    doc = read_sidecar(jobs[0].out)
    assert run.entries[0]["status"] == "extracted" and doc["extract"]["roi"] == [0, 0, 200, 276]

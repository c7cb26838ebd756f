"""`sconet synth`, `sconet cache` (+ `cache verify`), `sconet show` through the installed console
script, in subprocesses (real exit codes, real stdout/stderr)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_synth_command(sconet_cli, tmp_path):
    out = tmp_path / "syn"
    proc = sconet_cli("synth", out, "--sequences", 9, "--frames", 12, "--ratio", "1:1:2", "--ratio", "1:1:4")
    assert proc.returncode == 0, proc.stderr
    assert (out / "Scoliosis1K_112.json").is_file() and (out / "Scoliosis1K_114.json").is_file()
    pkls = sorted(out.glob("*/*/*/*.pkl"))
    assert len(pkls) == 9
    split = json.loads((out / "Scoliosis1K_112.json").read_text())
    assert set(split) >= {"TRAIN_SET", "TEST_SET"}
    # not empty: refused without --overwrite, one clear line, exit 2
    again = sconet_cli("synth", out, "--sequences", 9, "--frames", 12)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--overwrite" in again.stderr
    _no_traceback(again)
    forced = sconet_cli("synth", out, "--sequences", 6, "--frames", 12, "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert len(sorted(out.glob("*/*/*/*.pkl"))) == 6


def test_cache_build_then_reuse_verify_show(sconet_cli, dataset_copy, tmp_path):
    first = sconet_cli(
        "cache",
        "--poses",
        dataset_copy,
        "--representation",
        "body-only",
        "--split",
        dataset_copy / "Scoliosis1K_112.json",
    )
    assert first.returncode == 0, first.stderr
    assert "built store" in first.stdout and "frames/s" in first.stdout
    path = Path(first.stdout.split("built store: ")[1].splitlines()[0].strip())
    assert path.is_dir() and path.suffix == ".zarr"
    assert "sequences 30" in first.stdout and "frames 1,200" in first.stdout

    second = sconet_cli("cache", "--poses", dataset_copy, "--representation", "body-only")
    assert second.returncode == 0, second.stderr
    assert "reused" in second.stdout and str(path) in second.stdout

    ok = sconet_cli("cache", "verify", path)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stderr

    png = tmp_path / "p.png"
    shown = sconet_cli("show", "00003", "--poses", dataset_copy, "--out", png, "--frames", 6)
    assert shown.returncode == 0, shown.stderr
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown2 = sconet_cli("show", "00004", "--cache", path, "--out", tmp_path / "q.png")
    assert shown2.returncode == 0 and (tmp_path / "q.png").is_file(), shown2.stderr

    missing = sconet_cli("show", "99999", "--cache", path, "--out", tmp_path / "r.png")
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "99999" in missing.stderr
    _no_traceback(missing)

    # damage one chunk: verify exits 1 and names it
    chunk = sorted((path / "frames").glob("c.*"))[0]
    chunk.write_bytes(chunk.read_bytes()[:10])
    bad = sconet_cli("cache", "verify", path)
    assert bad.returncode == 1 and chunk.name in bad.stderr
    _no_traceback(bad)


def test_cache_other_settings_are_another_store(sconet_cli, small_cache, small_dataset):
    proc = sconet_cli("cache", "--poses", small_dataset, "--sigma-limb", 11, "--alignment", "per-channel")
    assert proc.returncode == 0, proc.stderr
    assert "built store" in proc.stdout and str(small_cache.path) not in proc.stdout
    same = sconet_cli("cache", "--poses", small_dataset)
    assert "reused" in same.stdout and str(small_cache.path) in same.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("cache", "--poses", "/nonexistent/poses"), "/nonexistent/poses"),
        (("cache", "verify", "/nonexistent/store.zarr"), "/nonexistent/store.zarr"),
        (("show", "00000", "--cache", "/nonexistent/store.zarr"), "/nonexistent/store.zarr"),
    ],
)
def test_errors_are_one_line(sconet_cli, args, needle):
    proc = sconet_cli(*args)
    assert proc.returncode in (1, 2)
    assert needle in proc.stderr
    _no_traceback(proc)


def test_bad_representation_and_bad_pose(sconet_cli, dataset_copy, tmp_path):
    proc = sconet_cli(
        "cache", "--poses", dataset_copy, "--representation", "no-such-thing", "--out", tmp_path / "a.zarr"
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    _no_traceback(proc)

    bad = sorted(dataset_copy.glob("*/*/*/*.pkl"))[2]
    bad.write_bytes(b"garbage")
    stop = sconet_cli("cache", "--poses", dataset_copy, "--out", tmp_path / "b.zarr")
    assert stop.returncode == 2 and stop.stderr.startswith("error: ") and str(bad) in stop.stderr
    assert len(stop.stderr.strip().splitlines()) == 1
    _no_traceback(stop)

    skip = sconet_cli("cache", "--poses", dataset_copy, "--out", tmp_path / "c.zarr", "--skip-bad")
    assert skip.returncode == 0, skip.stderr
    assert "skipped 1" in skip.stderr and str(bad) in skip.stderr
    assert "sequences 29" in skip.stdout


def test_cache_render_choices_reach_the_store(small_dataset, tmp_path):
    """--geometry / --alignment / --impute / --head (the CLI's StrEnum choices) land in the
    store's settings; their choices are the renderer's own lists."""
    from typer.testing import CliRunner

    from sconet.cache import open_cache
    from sconet.cli import app
    from sconet.cli.data import Alignment, Geometry, Head, Impute
    from sconet.render.settings import ALIGNMENTS, GEOMETRIES, HEADS, IMPUTATIONS

    assert [g.value for g in Geometry] == list(GEOMETRIES)
    assert [a.value for a in Alignment] == list(ALIGNMENTS)
    assert [i.value for i in Impute] == list(IMPUTATIONS)
    assert [h.value for h in Head] == list(HEADS)
    out = tmp_path / "aspect.zarr"
    args = ["cache", "--poses", str(small_dataset), "--out", str(out), "--threads", "1"]
    res = CliRunner().invoke(
        app,
        [*args, "--geometry", "aspect", "--alignment", "per-channel", "--impute", "knn", "--head", "remove"],
    )
    assert res.exit_code == 0, res.output
    render = open_cache(out).attrs["render"]
    assert (render["geometry"], render["alignment"], render["impute"], render["head"]) == (
        "aspect", "per-channel", "knn", "remove",
    )  # fmt: skip
    bad = CliRunner().invoke(app, [*args, "--impute", "cubic"])
    assert bad.exit_code == 2 and "cubic" in bad.output

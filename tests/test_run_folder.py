"""Runs are exclusive, die cleanly and can be killed (issue 18 cases 1, 8 and 13's SIGTERM).

Real `sconet train` processes: one holds a run folder while a second is refused; SIGTERM ends a
run as interrupted; kill -9 of a run with DataLoader workers leaves no process behind and the
run resumes; two runs started together without --out never share a folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sconet.checkpoint import read_checkpoint
from sconet.experiments import Ledger
from sconet.training import TrainError
from sconet.training.runfolder import LOCK_FILE, RunLock, read_lock_holder, reserve_run_folder

TINY = [
    "--recipe", "demo-cpu", "--device", "cpu", "--seed", "1", "--no-progress",
    "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8",
    "--set", "data.eval_max_frames=40", "--set", "run.log_iter=1",
]  # fmt: skip
# a run that goes on until it is stopped: no evaluation, last.pt every 2 iterations
ENDLESS = [*TINY, "--iters", "100000", "--set", "run.eval_iter=100000", "--set", "run.save_iter=2"]


def _exe() -> str:
    return str(Path(sys.executable).parent / "sconet")


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [_exe(), "train", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def _train_rows(out: Path) -> int:
    try:
        return (out / "metrics.jsonl").read_text().count('"kind": "train"')
    except OSError:
        return 0


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended early (rc {proc.returncode}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"timed out waiting; stderr: {proc.communicate()[1][-2000:]}")


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


# -- the lock itself ---------------------------------------------------------------------------


def test_run_lock_is_exclusive_and_released(tmp_path):
    out = tmp_path / "run"
    with RunLock(out) as first:
        assert first.held and (out / LOCK_FILE).is_file()
        assert read_lock_holder(out)["pid"] == os.getpid()
        with pytest.raises(TrainError, match=f"in use by another sconet run \\(pid {os.getpid()}\\)"):
            RunLock(out).acquire()
    assert not first.held and read_lock_holder(out) == {}
    RunLock(out).acquire().release()  # free again
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainError, match="is a file, not a folder"):
        RunLock(tmp_path / "file").acquire()
    with pytest.raises(TrainError, match="its parent is a file"):
        RunLock(tmp_path / "file" / "run").acquire()


def test_reserved_run_folders_never_collide(tmp_path):
    names = [reserve_run_folder(tmp_path / "runs", "demo-cpu-20250101-120000") for _ in range(3)]
    assert [p.name for p in names] == [
        "demo-cpu-20250101-120000",
        "demo-cpu-20250101-120000-2",
        "demo-cpu-20250101-120000-3",
    ]
    assert all(p.is_dir() for p in names)


# -- real processes ------------------------------------------------------------------------------


def test_second_run_refused_then_sigterm_interrupts(small_cache, small_split, sconet_cli, tmp_path):
    out, ledger = tmp_path / "run", tmp_path / "ledger.sqlite"
    data = ["--cache", small_cache.path, "--split", small_split, "--ledger", ledger]
    first = _start([*ENDLESS, *data, "--out", out])
    try:
        _wait_for(lambda: (out / "last.pt").is_file() and _train_rows(out) >= 3, first)
        assert read_lock_holder(out)["pid"] == first.pid
        rows_before = _train_rows(out)
        for args in ([*TINY, "--iters", "2"], [*TINY, "--overwrite"], ["--resume"]):  # fresh, restart, resume
            line = _one_line_error(sconet_cli("train", *args, *data, "--out", out))
            assert f"{out}: in use by another sconet run (pid {first.pid})" in line, line
        assert (out / "last.pt").is_file() and _train_rows(out) >= rows_before  # nothing was cleared
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 128 + signal.SIGTERM, err
    assert "interrupted" in err and "Traceback" not in err
    runs = Ledger(ledger).runs()
    assert [r.status for r in runs] == ["interrupted"]  # the refused runs never started
    # the lock went with the process: the run continues from its last.pt
    done = read_checkpoint(out / "last.pt").iteration
    more = sconet_cli("train", "--out", out, "--resume", "--iters", done + 1, "--ledger", ledger, timeout=300)
    assert more.returncode == 0, more.stderr
    assert read_checkpoint(out / "last.pt").iteration == done + 1
    assert [r.status for r in Ledger(ledger).runs()] == ["interrupted", "finished"]


def test_kill9_with_workers_leaves_no_process_and_resumes(small_cache, small_split, sconet_cli, tmp_path):
    out = tmp_path / "run"
    data = ["--cache", small_cache.path, "--split", small_split, "--ledger", "none"]
    run = _start([*ENDLESS, *data, "--num-workers", "2", "--out", out])
    try:
        _wait_for(lambda: (out / "last.pt").is_file() and _train_rows(out) >= 3, run)
        family = _descendants(run.pid)
        assert len(family) >= 2, family  # the two workers (and forkserver / resource tracker)
        run.kill()
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    end = time.monotonic() + 20
    while time.monotonic() < end and any(_alive(p) for p in family):
        time.sleep(0.2)
    left = [p for p in family if _alive(p)]
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in left if _alive(p)]
    # killed mid-run: it continues from its last checkpoint (the lock died with it)
    done = read_checkpoint(out / "last.pt").iteration
    more = sconet_cli("train", "--out", out, "--resume", "--iters", done + 2, timeout=300)
    assert more.returncode == 0, more.stderr
    assert f"iterations {done}..{done + 2}" in more.stdout
    assert not list(out.glob(".*.tmp"))


def test_runs_started_together_get_their_own_folders(small_cache, small_split, tmp_path):
    # Every name the two runs could generate in the next minutes is taken already, as if another
    # run had started in that second: each must claim a fresh folder of its own.
    now = time.time()
    taken = set()
    for s in range(0, 600):
        name = f"demo-cpu-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now + s))}"
        (tmp_path / "runs" / name).mkdir(parents=True, exist_ok=True)
        taken.add(name)
    data = ["--cache", small_cache.path, "--split", small_split, "--ledger", "none", "--iters", "1"]
    procs = [_start([*TINY, *data], cwd=tmp_path) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    folders = []
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
        line = next(ln for ln in stdout.splitlines() if ln.startswith("run: "))
        folders.append(tmp_path / line[len("run: ") :])
    assert folders[0] != folders[1]
    for folder in folders:
        assert folder.name not in taken and folder.name.rsplit("-", 1)[0] in taken
        assert (folder / "last.pt").is_file() and _train_rows(folder) == 1

"""What a run reports as it goes: metrics.jsonl + TensorBoard, and a progress bar or plain lines."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sconet._io import write_error_reason

METRICS_LOG = "metrics.jsonl"


# ----------------------------------------------------------------------------------------------
# logging
# ----------------------------------------------------------------------------------------------


class MetricsLog:
    """metrics.jsonl + TensorBoard (rank 0 only)."""

    def __init__(self, out: Path, start: int, enabled: bool):
        self.enabled = enabled
        self.writer = None
        self.path = out / METRICS_LOG
        if not enabled:
            return
        if start > 0 and self.path.exists():  # drop entries past the resumed iteration
            keep = [
                ln
                for ln in self.path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("iter", 0) <= start
            ]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        elif start == 0 and self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"), purge_step=start if start > 0 else None)
        except Exception:  # pragma: no cover - tensorboard missing or broken
            self.writer = None

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"kind": kind, "iter": iteration, "time": round(time.time(), 3), **values}
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:  # a failed write() names no file
            raise OSError(exc.errno, write_error_reason(exc), str(self.path)) from None
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.writer.add_scalar(
                        f"{kind}/{k}" if kind == "train" else k.replace("_", "/", 1), v, iteration
                    )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


class ProgressDisplay:
    """rich progress bar (it/s and latest metrics) on a terminal; plain lines otherwise."""

    def __init__(self, total: int, start: int, enabled: bool, live: bool, log: Callable[[str], None]):
        self.enabled, self.total, self.log = enabled, total, log
        self.bar = None
        self.t0, self.n0 = time.perf_counter(), start
        self.text = ""
        if enabled and live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self.task = self.bar.add_task("train", total=total, completed=start, speed="", info="")
            self.bar.start()

    def update(self, done: int, it_per_s: float, info: str | None = None) -> None:
        if not self.enabled:
            return
        if info is not None:
            self.text = info
        if self.bar is not None:
            self.bar.update(self.task, completed=done, speed=f"{it_per_s:.2f} it/s", info=self.text)

    def line(self, done: int, it_per_s: float, info: str) -> None:
        if self.enabled and self.bar is None:
            self.log(f"iter {done}/{self.total}  {it_per_s:.2f} it/s  {info}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def progress_info(loss_text: str, metrics: dict[str, float]) -> str:
    parts = [loss_text] if loss_text else []
    for key in ("test_f1", "test_accuracy", "val_f1", "val_accuracy"):
        if key in metrics:
            parts.append(f"{key} {100 * metrics[key]:.2f}")
    return "  ".join(parts)

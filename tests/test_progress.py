"""Progress reporting: plain periodic lines off a terminal (sconet.progress)."""

from __future__ import annotations

import io
import time

from sconet.progress import Progress, format_seconds, is_live


def test_plain_lines_first_periodic_and_final():
    lines: list[str] = []
    with Progress("cache", 100, "frames", live=False, every_s=3600, log=lines.append) as p:
        for done in range(0, 101, 10):
            p.update(done)
    assert len(lines) == 2  # the first update and the final state; nothing in between at 1/hour
    assert lines[0].startswith("cache: 0/100 (0 %)")
    assert (
        lines[-1].startswith("cache: 100/100 (100 %)") and "frames/s" in lines[-1] and "eta 0:00" in lines[-1]
    )


def test_plain_lines_every_update_with_info_and_rate():
    lines: list[str] = []
    p = Progress("train", 4, "it", live=False, every_s=0, log=lines.append)
    for i in range(1, 5):
        time.sleep(0.01)
        p.update(i, info=f"loss {1 / i:.2f}")
    p.close()
    assert len(lines) == 4  # every update printed, and close adds nothing new
    assert lines[1].startswith("train: 2/4 (50 %)") and "it/s" in lines[1] and lines[1].endswith("loss 0.50")
    assert p.rate > 0


def test_unknown_total_and_disabled():
    lines: list[str] = []
    with Progress("eval", None, "seq", live=False, every_s=0, log=lines.append) as p:
        p.update(5)
    assert lines == ["eval: 5"]
    silent: list[str] = []
    with Progress("x", 3, live=False, log=silent.append, enabled=False) as p:
        p.update(3)
    assert silent == []


def test_live_bar_writes_to_its_stream():
    stream = io.StringIO()
    with Progress("train", 10, "it", live=True, stream=stream) as p:
        p.update(5, info="loss 1.0")
        p.message("an evaluation line")
    out = stream.getvalue()
    assert "train" in out and "an evaluation line" in out


def test_helpers():
    assert is_live(None, io.StringIO()) is False and is_live(True) is True and is_live(False) is False
    assert format_seconds(65) == "1:05" and format_seconds(3725) == "1:02:05" and format_seconds(None) == "?"

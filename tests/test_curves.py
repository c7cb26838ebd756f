"""PNG curves drawn with Pillow (sconet.experiments.curves)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sconet.experiments.curves import Panel, Series, nice_ticks, plot_panels


def test_nice_ticks():
    assert nice_ticks(0, 300, 6) == [0, 50, 100, 150, 200, 250, 300]
    t = nice_ticks(0.31, 0.87)
    assert t[0] >= 0.31 and t[-1] <= 0.87 and len(t) >= 2
    assert nice_ticks(1.0, 1.0) == [1.0]


def test_plot_draws_each_series_in_its_colour(tmp_path):
    a = Series("baseline", [(50, 0.3), (100, 0.5), (150, 0.6)])
    b = Series("bad", [(50, 0.3), (100, 0.2)], stop_x=100)
    f1 = Panel(
        "test macro-F1 (%)",
        [a, b],
        reference=0.6,
        band=(0.55, 0.65),
        reference_label="baseline",
        percent=True,
    )
    loss = Panel("loss", [Series("baseline", [(0, 3.0), (150, 1.0)])])
    out = plot_panels([f1, loss], tmp_path / "sub" / "curves.png", title="t")
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[1] == 900 and img.shape[0] > 400
    colours = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in ("#1f77b4", "#d62728")}
    for colour in colours:
        assert np.all(img == colour, axis=-1).sum() > 100, colour  # both runs' lines are drawn
    assert np.all(img == (232, 232, 232), axis=-1).sum() > 1000  # the reference band

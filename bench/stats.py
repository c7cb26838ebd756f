"""Bootstrap intervals: time of :func:`sconet.evaluation.stats.bootstrap_intervals` and
:func:`paired_bootstrap` on a test set the size of Scoliosis1K's 1:1:2 split.

Run: ``python bench/stats.py`` (options: ``--sequences 750``, ``--resamples 2000``, ``--repeat 5``).
Prints the median time per call beside the budget it is meant to stay well under (1 s).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from sconet.evaluation.stats import bootstrap_intervals, paired_bootstrap

BUDGET_S = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=750)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.sequences
    y = np.sort(rng.choice(3, n, p=[0.55, 0.05, 0.40]))
    a = np.where(rng.random(n) < 0.9, y, rng.integers(0, 3, n))
    b = np.where(rng.random(n) < 0.85, y, rng.integers(0, 3, n))
    for name, fn in (
        ("bootstrap_intervals", lambda: bootstrap_intervals(y, a, n_resamples=args.resamples)),
        ("paired_bootstrap", lambda: paired_bootstrap(y, a, b, n_resamples=args.resamples)),
    ):
        fn()
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(
            f"{name:20s} {n} sequences x {args.resamples} resamples: {1000 * med:7.1f} ms "
            f"(budget {1000 * BUDGET_S:.0f} ms)"
        )


if __name__ == "__main__":
    main()

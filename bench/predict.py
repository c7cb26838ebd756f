"""`sconet predict` latency: one 300-frame subject on the CPU, per stage, cold and warm.

Run: ``python bench/predict.py --ckpt runs/demo/last.pt`` (options: ``--pose FILE``, default a
300-frame synthetic positive; ``--widths 0.0625 1.0``: also time untrained copies of the
checkpoint at other model widths; ``--repeat``). Python imports are excluded; "cold" is the
first call in the process (checkpoint load + one-time oneDNN set-up), "warm" the median of the
next calls.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sconet.data.synth import SynthConfig, generate_sequence
from sconet.models import ModelConfig, ScoNetMT
from sconet.predict import Screener


def _width_copy(ckpt: Path, width: float, folder: Path) -> Path:
    raw = torch.load(ckpt, weights_only=True)
    config = ModelConfig.from_dict({**raw["model_config"], "width": width})
    raw["model"] = ScoNetMT(config, seed=0).state_dict()
    raw["model_config"] = config.to_dict()
    out = folder / f"width-{width:g}.pt"
    torch.save(raw, out)
    return out


def bench(ckpt: Path, pose: Path, repeat: int) -> None:
    t0 = time.perf_counter()
    screener = Screener(ckpt, max_frames=300)
    load = time.perf_counter() - t0
    first = screener.screen(pose)
    warm = [screener.screen(pose) for _ in range(repeat)]
    med = {k: statistics.median(r.timings[k] for r in warm) for k in first.timings}
    width = screener.model.config.width
    print(
        f"width {width:g}: checkpoint load {1000 * load:.0f} ms; "
        f"cold screen {1000 * first.timings['total']:.0f} ms; "
        f"warm screen {1000 * med['total']:.0f} ms (read {1000 * med['read']:.1f}, "
        f"render {1000 * med['render']:.1f}, "
        f"PAV {1000 * med['pav']:.1f}, model {1000 * med['model']:.0f} ms); {first.frames_used} frames"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--pose", type=Path)
    parser.add_argument("--widths", type=float, nargs="*", default=[])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        pose = args.pose
        if pose is None:
            pose = Path(tmp) / "subject.pkl"
            pose.write_bytes(
                pickle.dumps(generate_sequence(1, "positive", SynthConfig(n_sequences=10, frames=300)))
            )
        bench(args.ckpt, pose, args.repeat)
        for w in args.widths:
            bench(_width_copy(args.ckpt, w, Path(tmp)), pose, args.repeat)


if __name__ == "__main__":
    main()

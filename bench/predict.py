"""`sconet predict` latency: one 300-frame subject on the CPU, per stage, cold and warm.

Run: ``python bench/predict.py --ckpt runs/demo/last.pt`` (options: ``--pose FILE``, default a
300-frame synthetic positive; ``--widths 0.0625 1.0``: also time untrained copies of the
checkpoint at other model widths; ``--repeat``). Python imports are excluded; "cold" is the
first call in the process (checkpoint load + one-time oneDNN set-up), "warm" the median of the
next calls.

``--long 60000``: peak memory (RSS) of screening a recording of that many frames, each in a
fresh process, beside the baseline of also rendering every frame (what predict did before it
rendered only the frames it uses).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
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


_PEAK = textwrap.dedent(
    """
    import resource, sys
    from sconet.predict import Screener
    screener = Screener(sys.argv[1])
    if sys.argv[3] == "baseline":  # every frame rendered, as predict did before
        from sconet.data import load_pose_file
        from sconet.render import render_batch
        maps = render_batch([load_pose_file(sys.argv[2])], screener.render)
    result = screener.screen(sys.argv[2])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, result.frames_used)
    """
)


def bench_long(ckpt: Path, frames: int, folder: Path) -> None:
    base = np.asarray(generate_sequence(1, "positive", SynthConfig(n_sequences=10, frames=300)))
    pose = folder / "long.pkl"
    pose.write_bytes(pickle.dumps(np.tile(base, (frames // 300 + 1, 1, 1))[:frames]))
    peaks = {}
    for mode in ("predict", "baseline"):
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, str(ckpt), str(pose), mode],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        peaks[mode], used = int(out[0]), int(out[1])
    print(
        f"{frames:,}-frame recording ({used} frames used): peak RSS {peaks['predict']} MB "
        f"(baseline, every frame rendered: {peaks['baseline']} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--pose", type=Path)
    parser.add_argument("--widths", type=float, nargs="*", default=[])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--long", type=int, default=0, help="also: peak RSS for a recording of N frames")
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
        if args.long:
            bench_long(args.ckpt, args.long, Path(tmp))


if __name__ == "__main__":
    main()

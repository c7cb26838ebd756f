"""torchrun worker of tests/test_syncbn.py: one SGD step of a narrow ScoNet-MT-ske under DDP (gloo,
CPU), each rank on its half of a fixed batch, with synchronised BatchNorm and without.

usage: torchrun --nproc_per_node 2 tests/_syncbn_worker.py OUT_DIR
Writes OUT_DIR/{sync,plain}-rank{r}.pt: the model's state dict after the step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from sconet.models import ModelConfig, ScoNetMT
from sconet.training import TrainConfig
from sconet.training.distributed import setup_distributed
from sconet.training.setup import ddp_wrap
from sconet.training.syncbn import convert_sync_batchnorm

SEQUENCES, FRAMES, WIDTH, LR = 4, 5, 0.0625, 0.1


def union_batch() -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """The whole batch: ``SEQUENCES`` sequences of ``FRAMES`` frames, packed, and their labels."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(SEQUENCES * FRAMES, 2, 64, 44, generator=g)
    x[: 2 * FRAMES] *= 0.5  # the halves differ in distribution, so per-rank statistics differ
    return x, [FRAMES] * SEQUENCES, torch.tensor([0, 2, 1, 2])


def one_step(net: torch.nn.Module, params, x: torch.Tensor, lengths: list[int], labels: torch.Tensor) -> None:
    opt = torch.optim.SGD(params, lr=LR)
    out = net(x, lengths)
    loss = F.cross_entropy(16 * out.logits.mean(-1), labels)
    loss.backward()
    opt.step()


def fresh_model() -> ScoNetMT:
    return ScoNetMT(ModelConfig(width=WIDTH), seed=0)


def main(out: Path) -> None:
    ddp, device = setup_distributed("cpu")
    x, lengths, labels = union_batch()
    share = SEQUENCES // ddp.world_size
    mine = slice(ddp.rank * share * FRAMES, (ddp.rank + 1) * share * FRAMES)
    for mode in ("sync", "plain"):
        model = fresh_model()
        if mode == "sync":
            convert_sync_batchnorm(model, device)
        net = ddp_wrap(model, TrainConfig(), ddp, device)
        net.train()
        one_step(
            net,
            model.parameters(),
            x[mine],
            lengths[:share],
            labels[ddp.rank * share : (ddp.rank + 1) * share],
        )
        torch.save(model.state_dict(), out / f"{mode}-rank{ddp.rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

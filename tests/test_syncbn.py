"""run.sync_bn: BatchNorm synchronised across torchrun ranks (gloo on CPU), as OpenGait's sync_BN.

The 2-process test checks the statistics of the union: after one DDP step with each rank on its
half of a batch, every BatchNorm's running statistics (and every weight) equal a single-process
step on the whole batch; without synchronisation they do not. On CPU the synchronised layers are
sconet's CpuSyncBatchNorm (torch's SyncBatchNorm kernels are CUDA-only); torch's own CUDA path is
the same conversion call and is not exercised without GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sconet.models import ModelConfig, ScoNetMT
from sconet.training import load_recipe
from sconet.training.syncbn import CpuSyncBatchNorm, convert_sync_batchnorm

sys.path.insert(0, str(Path(__file__).parent))
import _syncbn_worker as worker  # noqa: E402


def _bn_layers(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_conversion_keeps_names_tensors_and_single_process_results():
    model = ScoNetMT(ModelConfig(width=0.0625), seed=0)
    plain = ScoNetMT(ModelConfig(width=0.0625), seed=0)
    names = list(model.state_dict())
    weight = model.Backbone.forward_block.bn1.weight
    assert convert_sync_batchnorm(model, torch.device("cpu")) == len(_bn_layers(plain)) == 13
    assert list(model.state_dict()) == names  # checkpoints stay interchangeable
    assert model.Backbone.forward_block.bn1.weight is weight
    assert all(
        isinstance(m, CpuSyncBatchNorm) for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)
    )
    x, lengths, _ = worker.union_batch()
    for train in (True, False):  # no process group: plain BatchNorm results
        model.train(train), plain.train(train)
        assert torch.equal(model(x, lengths).logits, plain(x, lengths).logits)
    with pytest.raises(TypeError):
        convert_sync_batchnorm(torch.nn.BatchNorm2d(3), torch.device("cpu"))


def test_recipes_from_opengait_sync_batchnorm():
    assert load_recipe("sgd").run.sync_bn  # OpenGait's ScoNet config: sync_BN true
    for name in ("adamw-cosine", "adamw-multistep", "drf-warmstart", "demo-cpu"):  # based on sgd
        assert load_recipe(name).run.sync_bn, name
    from sconet.training import TrainConfig

    assert TrainConfig().run.sync_bn is False


def test_two_ranks_equal_one_process_on_the_union(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(worker.__file__)), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]

    # the single-process reference: the same model, plain BatchNorm, the whole batch
    ref = worker.fresh_model()
    ref.train()
    x, lengths, labels = worker.union_batch()
    worker.one_step(ref, ref.parameters(), x, lengths, labels)
    expect = ref.state_dict()
    bn = _bn_layers(ref)

    sync = [torch.load(tmp_path / f"sync-rank{r}.pt", weights_only=True) for r in (0, 1)]
    plain = [torch.load(tmp_path / f"plain-rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, want in expect.items():
        for got in sync:
            if want.is_floating_point():
                torch.testing.assert_close(got[key], want, rtol=1e-4, atol=1e-5, msg=key)
            else:
                assert torch.equal(got[key], want), key
    for name in bn:
        assert int(sync[0][f"{name}.num_batches_tracked"]) == 1
    # without synchronisation each rank kept the statistics of its own half: not the union's
    stats = [f"{n}.running_{s}" for n in bn for s in ("mean", "var")]
    worst = max(float((plain[0][k] - expect[k]).abs().max()) for k in stats)
    assert worst > 1e-3
    assert any(not torch.allclose(plain[0][k], plain[1][k]) for k in stats)

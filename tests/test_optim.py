"""Optimisers and learning-rate schedules (``sconet.training.optim``): every setting reaches the
optimiser or the factor, checked against values worked out by hand. Fast: no data, no training."""

from __future__ import annotations

import math

import pytest
import torch

from sconet.training import TrainConfig, apply_overrides
from sconet.training.optim import (
    OPTIMIZERS,
    SCHEDULES,
    build_optimizer,
    build_scheduler,
    lr_factor,
)


def _config(*overrides: str) -> TrainConfig:
    return apply_overrides(TrainConfig(), list(overrides))


def test_registries_name_every_choice():
    assert set(OPTIMIZERS) == {"sgd", "adamw"}
    assert set(SCHEDULES) == {"cosine", "multistep", "constant"}


def test_cosine_ends_at_min_lr_ratio():
    c = _config("run.iters=100", "schedule.name=cosine", "schedule.min_lr_ratio=0.1")
    assert lr_factor(0, c) == pytest.approx(1.0)
    assert lr_factor(50, c) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(25, c) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(100, c) == pytest.approx(0.1)
    assert lr_factor(150, c) == pytest.approx(0.1)  # past the end: stays at the floor
    one = _config("run.iters=11", "schedule.warmup_iters=10", "schedule.min_lr_ratio=0.1")
    assert lr_factor(10, one) == pytest.approx(1.0) and lr_factor(11, one) == pytest.approx(0.1)


def test_warmup_starts_at_warmup_start_then_joins_the_schedule():
    c = _config(
        "run.iters=60",
        "schedule.name=cosine",
        "schedule.warmup_iters=10",
        "schedule.warmup_start=0.2",
        "schedule.min_lr_ratio=0.5",
    )
    assert [lr_factor(s, c) for s in (0, 5, 10)] == pytest.approx([0.2, 0.6, 1.0])
    assert lr_factor(35, c) == pytest.approx(0.75)  # half-way through the 50 cosine steps
    assert lr_factor(60, c) == pytest.approx(0.5)
    k = _config("schedule.name=constant", "schedule.warmup_iters=4", "schedule.warmup_start=0.0")
    assert [lr_factor(s, k) for s in (0, 1, 4, 1000)] == pytest.approx([0.0, 0.25, 1.0, 1.0])


def test_multistep_gamma_at_each_milestone():
    m = _config("schedule.name=multistep", "schedule.milestones=[3, 7]", "schedule.gamma=0.5")
    assert [lr_factor(s, m) for s in (0, 2, 3, 6, 7, 50)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])


def test_sgd_gets_its_settings():
    c = _config(
        "optim.name=sgd",
        "optim.lr=0.03",
        "optim.momentum=0.8",
        "optim.nesterov=true",
        "optim.weight_decay=0.001",
    )
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, c)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.03,
        0.8,
        True,
        0.001,
    )


def test_adamw_gets_its_settings_and_only_trainable_parameters():
    c = _config(
        "optim.name=adamw",
        "optim.lr=0.002",
        "optim.betas=[0.8, 0.95]",
        "optim.eps=1e-6",
        "optim.weight_decay=0.2",
    )
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model, c)
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        0.002,
        (0.8, 0.95),
        1e-6,
        0.2,
    )
    held = {id(p) for p in group["params"]}
    assert held == {id(p) for p in model.parameters() if p.requires_grad} and len(held) == 3


def test_scheduler_steps_through_lr_factor():
    c = _config("optim.lr=0.1", "run.iters=10", "schedule.name=multistep", "schedule.milestones=[2]")
    opt = build_optimizer(torch.nn.Linear(2, 2), c)
    sched = build_scheduler(opt, c)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1, 0.1, 0.01, 0.01])

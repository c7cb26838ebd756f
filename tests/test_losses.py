"""Losses against hand-computed values and brute-force references."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sconet.models import (
    CrossEntropyPartLoss,
    ScoNetLoss,
    TripletLoss,
    inverse_frequency_weights,
    pairwise_part_distances,
)


def _hand_embeddings() -> torch.Tensor:
    """[N=3, C=2, P=2]. Part 0: points 0, 1, 3 on the first axis. Part 1: 0, 0, 10 on the second."""
    e = torch.zeros(3, 2, 2)
    e[:, 0, 0] = torch.tensor([0.0, 1.0, 3.0])
    e[:, 1, 1] = torch.tensor([0.0, 0.0, 10.0])
    return e


LABELS = torch.tensor([7, 7, 4])  # sequence ids: 0 and 1 are positives of each other


def test_triplet_hand_case_with_self_pairs():
    # part 0, margin 2.5, distances d01=1, d02=3, d12=2; anchor itself counts as a positive (OpenGait)
    #   a=0: (p=0,n=2) relu(0-3+2.5)=0   (p=1,n=2) relu(1-3+2.5)=0.5
    #   a=1: (p=0,n=2) relu(1-2+2.5)=1.5 (p=1,n=2) relu(0-2+2.5)=0.5
    #   a=2: (p=2,n=0) relu(0-3+2.5)=0   (p=2,n=1) relu(0-2+2.5)=0.5
    #   -> 4 non-zero terms, sum 3.0, mean 0.75 ; 6 valid triplets
    # part 1: d01=0, d02=d12=10: every term relu(<=0 - 10 + 2.5) = 0 -> part loss 0
    loss, stats = TripletLoss(margin=2.5)(_hand_embeddings(), LABELS)
    assert loss.item() == pytest.approx((0.75 + 0.0) / 2)
    assert stats["nonzero_fraction"].item() == pytest.approx((4 / 6 + 0) / 2)
    assert stats["num_nonzero"].item() == pytest.approx(2.0)
    assert stats["mean_dist"].item() == pytest.approx((12 / 9 + 40 / 9) / 2)
    assert stats["hard_loss"].item() == pytest.approx(1.5 / 2)


def test_triplet_hand_case_without_self_pairs():
    # part 0: a=0 (p=1,n=2) 0.5 ; a=1 (p=0,n=2) 1.5 ; a=2 has no positive -> mean 1.0
    loss, stats = TripletLoss(margin=2.5, include_self_pairs=False)(_hand_embeddings(), LABELS)
    assert loss.item() == pytest.approx(0.5)
    assert stats["nonzero_fraction"].item() == pytest.approx(0.5)


def test_triplet_default_margin_all_satisfied_is_zero():
    loss, stats = TripletLoss()(_hand_embeddings() * 10, LABELS)
    assert loss.item() == 0.0 and stats["nonzero_fraction"].item() == 0.0


def _brute_force_triplet(emb: torch.Tensor, labels: list, margin: float) -> float:
    n, _, p = emb.shape
    parts = []
    for k in range(p):
        terms = []
        for a, pos, neg in itertools.product(range(n), repeat=3):
            if labels[a] == labels[pos] and labels[a] != labels[neg]:
                d_ap = torch.dist(emb[a, :, k], emb[pos, :, k]).item()
                d_an = torch.dist(emb[a, :, k], emb[neg, :, k]).item()
                terms.append(max(d_ap - d_an + margin, 0.0))
        nz = [t for t in terms if t > 0]
        parts.append(sum(nz) / len(nz) if nz else 0.0)
    return sum(parts) / p


def test_triplet_matches_brute_force_unbalanced_string_ids():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(7, 5, 3, generator=g) * 0.3
    ids = ["00001", "00001", "00002", "00003", "00003", "00003", "00009"]
    loss, _ = TripletLoss(margin=0.2)(emb, ids)
    assert loss.item() == pytest.approx(_brute_force_triplet(emb, ids, 0.2), rel=1e-5, abs=1e-6)


def test_triplet_backward_is_finite():
    emb = torch.randn(8, 16, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss, _ = TripletLoss()(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_pairwise_part_distances():
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(pairwise_part_distances(x), torch.cdist(x, x), atol=1e-4, rtol=1e-4)


# -- cross-entropy ----------------------------------------------------------------------------------


def _manual_ce(logits, labels, scale, eps, weights=None):
    """PyTorch's convention, written out: per (sample, part) term
    w_y (1 - eps) (-log p_y) + eps / K * sum_c w_c (-log p_c), divided by sum of w_y."""
    n, k, p = logits.shape
    w = [1.0] * k if weights is None else list(weights)
    num = den = 0.0
    for i in range(n):
        for j in range(p):
            z = [scale * logits[i, c, j].item() for c in range(k)]
            lse = math.log(sum(math.exp(v) for v in z))
            logp = [v - lse for v in z]
            y = int(labels[i])
            num += w[y] * (1 - eps) * -logp[y] + eps / k * sum(w[c] * -logp[c] for c in range(k))
            den += w[y]
    return num / den


def test_ce_uniform_logits_is_log3():
    for eps in (0.0, 0.1):
        loss, _ = CrossEntropyPartLoss(label_smoothing=eps)(torch.zeros(4, 3, 16), torch.tensor([0, 1, 2, 2]))
        assert loss.item() == pytest.approx(math.log(3))


def test_ce_hand_value_two_classes_no_smoothing():
    # scale 1, one sample, one part, logits (ln 3, 0) for K=2: p_0 = 3/4 -> CE(label 0) = ln(4/3)
    logits = torch.tensor([[[math.log(3.0)], [0.0]]])
    loss, stats = CrossEntropyPartLoss(scale=1, label_smoothing=0)(logits, torch.tensor([0]))
    assert loss.item() == pytest.approx(math.log(4 / 3))
    # with smoothing 0.1: 0.9 ln(4/3) + 0.05 (ln(4/3) + ln 4)
    loss, _ = CrossEntropyPartLoss(scale=1, label_smoothing=0.1)(logits, torch.tensor([0]))
    assert loss.item() == pytest.approx(0.9 * math.log(4 / 3) + 0.05 * (math.log(4 / 3) + math.log(4)))
    assert stats["accuracy"].item() == 1.0


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_matches_manual_formula(eps):
    g = torch.Generator().manual_seed(2)
    logits = torch.rand(5, 3, 4, generator=g) * 2 - 1
    labels = torch.tensor([0, 2, 1, 2, 0])
    loss, _ = CrossEntropyPartLoss(scale=16, label_smoothing=eps)(logits, labels)
    assert loss.item() == pytest.approx(_manual_ce(logits, labels, 16, eps), rel=1e-5)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_weighted_ce_matches_manual_formula(eps):
    g = torch.Generator().manual_seed(3)
    logits = torch.rand(6, 3, 2, generator=g) * 2 - 1
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    weights = inverse_frequency_weights(labels, 3)
    loss, _ = CrossEntropyPartLoss(scale=16, label_smoothing=eps, class_weights=weights)(logits, labels)
    assert loss.item() == pytest.approx(_manual_ce(logits, labels, 16, eps, weights.tolist()), rel=1e-5)
    plain, _ = CrossEntropyPartLoss(scale=16, label_smoothing=eps)(logits, labels)
    assert loss.item() != pytest.approx(plain.item())


def test_inverse_frequency_weights():
    w = inverse_frequency_weights([0, 0, 0, 1, 2, 2], 3)
    torch.testing.assert_close(w, torch.tensor([6 / 9, 2.0, 1.0]))
    # an absent class is treated as seen once
    torch.testing.assert_close(
        inverse_frequency_weights(torch.tensor([0, 0]), 3), torch.tensor([1 / 3, 2 / 3, 2 / 3])
    )
    with pytest.raises(ValueError, match="labels must be in"):
        inverse_frequency_weights([0, 3], 3)


def test_ce_errors():
    with pytest.raises(ValueError, match="class weights for 3 classes"):
        CrossEntropyPartLoss(class_weights=[1.0, 2.0])(torch.zeros(1, 3, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="2 labels for 1 logits"):
        CrossEntropyPartLoss()(torch.zeros(1, 3, 2), torch.tensor([0, 1]))


# -- combined ---------------------------------------------------------------------------------------


def test_sconet_loss_combines_terms():
    emb = _hand_embeddings()
    logits = torch.zeros(3, 3, 2)
    classes = torch.tensor([2, 2, 0])
    total, stats = ScoNetLoss(margin=2.5)(emb, logits, LABELS, classes)
    assert total.item() == pytest.approx(0.375 + math.log(3))
    assert stats["loss"].item() == pytest.approx(total.item())
    assert stats["triplet/loss"].item() == pytest.approx(0.375)
    assert stats["ce/loss"].item() == pytest.approx(math.log(3))
    assert {"triplet/nonzero_fraction", "triplet/mean_dist", "ce/accuracy"} <= set(stats)
    total, stats = ScoNetLoss(triplet_weight=0.0, ce_weight=2.0)(emb, logits, LABELS, classes)
    assert total.item() == pytest.approx(2 * math.log(3))
    assert not any(k.startswith("triplet/") for k in stats)


def test_sconet_loss_on_model_output_backprops():
    from sconet.models import ModelConfig, ScoNetMT

    torch.set_num_threads(2)
    model = ScoNetMT(ModelConfig(width=0.125), seed=0).train()
    x = torch.rand(8, 2, 2, 64, 16, generator=torch.Generator().manual_seed(0))
    out = model(x)
    total, _ = ScoNetLoss()(
        out.embeddings,
        out.logits,
        torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
        torch.tensor([0, 0, 1, 1, 2, 2, 0, 0]),
    )
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_from_config_uses_every_loss_setting():
    """Each ``LossConfig`` field reaches its term (a term built with a default instead is caught)."""
    from sconet.training import LossConfig

    g = torch.Generator().manual_seed(4)
    logits = torch.rand(5, 3, 4, generator=g) * 2 - 1
    labels = torch.tensor([0, 2, 1, 2, 0])
    seq_ids = torch.arange(5)
    for scale, eps in ((4.0, 0.25), (16.0, 0.0)):
        ce_only = ScoNetLoss.from_config(LossConfig(triplet_weight=0.0, scale=scale, label_smoothing=eps))
        total, stats = ce_only(torch.zeros(5, 2, 4), logits, seq_ids, labels)
        assert total.item() == pytest.approx(_manual_ce(logits, labels, scale, eps), rel=1e-5)
        assert "triplet/loss" not in stats
    weighted = ScoNetLoss.from_config(LossConfig(triplet_weight=0.0, ce_weight=3.0, label_smoothing=0.0))
    total, _ = weighted(torch.zeros(5, 2, 4), logits, seq_ids, labels)
    assert total.item() == pytest.approx(3 * _manual_ce(logits, labels, 16, 0.0), rel=1e-5)
    # triplet: margin 2.5 with and without self pairs (the hand cases above), weight 2
    emb, flat = _hand_embeddings(), torch.zeros(3, 3, 2)
    for self_pairs, value in ((True, 0.375), (False, 0.5)):
        cfg = LossConfig(triplet_weight=2.0, ce_weight=0.0, margin=2.5, include_self_pairs=self_pairs)
        total, _ = ScoNetLoss.from_config(cfg)(emb, flat, LABELS, torch.tensor([2, 2, 0]))
        assert total.item() == pytest.approx(2 * value)


def test_class_weights_and_defaults_reach_the_cross_entropy():
    """Class weights given to ScoNetLoss (either constructor) weight its CE term; the keyword
    constructor's defaults are those of ``LossConfig`` (margin 0.2, scale 16, smoothing 0.1)."""
    from sconet.training import LossConfig

    g = torch.Generator().manual_seed(5)
    logits = torch.rand(6, 3, 2, generator=g) * 2 - 1
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    weights = inverse_frequency_weights(labels, 3)
    want = _manual_ce(logits, labels, 16, 0.1, weights.tolist())
    zeros, ids = torch.zeros(6, 2, 2), torch.arange(6)
    cfg = LossConfig(triplet_weight=0.0)
    for loss in (ScoNetLoss.from_config(cfg, weights), ScoNetLoss(triplet_weight=0.0, class_weights=weights)):
        assert loss(zeros, logits, ids, labels)[0].item() == pytest.approx(want, rel=1e-5)
    default = ScoNetLoss(triplet_weight=0.0)(zeros, logits, ids, labels)[0]
    assert default.item() == pytest.approx(_manual_ce(logits, labels, 16, 0.1), rel=1e-5)
    emb = _hand_embeddings() * 0.1  # distances 0.1 / 0.2 / 0.3: the 0.2 margin decides
    got = ScoNetLoss(ce_weight=0.0)(emb, torch.zeros(3, 3, 2), LABELS, torch.tensor([2, 2, 0]))[0]
    assert got.item() == pytest.approx(TripletLoss(margin=0.2)(emb, LABELS)[0].item())
    assert got.item() != pytest.approx(TripletLoss(margin=1.2)(emb, LABELS)[0].item())

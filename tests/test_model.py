"""ScoNet-MT / DRF model: shapes, packed input, parameter counts, OpenGait keys and checkpoints."""

from __future__ import annotations

import pytest
import torch

from sconet.classes import CLASS_ORDER_2024, CLASSES, class_permutation
from sconet.models import (
    STATE_DICT_ENTRIES,
    CheckpointMismatchError,
    ModelConfig,
    ScoNetMT,
    build_model,
    count_parameters,
    horizontal_pool,
    load_opengait_state_dict,
    predict,
    temporal_max_pool,
)

torch.set_num_threads(2)

SMALL = ModelConfig(width=0.125)  # backbone channels 8/16/32/64
H, W = 64, 16  # height must be a multiple of 4 * 16 parts; narrow width keeps CPU tests fast


def _randomise_bn_stats(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _small(seed: int = 0, **changes) -> ScoNetMT:
    model = ScoNetMT(SMALL.replace(**changes), seed=seed)
    _randomise_bn_stats(model, seed)
    return model.eval()


def _pav(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 8, 3, generator=torch.Generator().manual_seed(seed))


# -- config ---------------------------------------------------------------------------------------


def test_config_round_trip_and_validation():
    cfg = ModelConfig(in_channels=1, width=0.5, arch="drf", pga="part")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.channels == (32, 64, 128, 256)
    assert ModelConfig().channels == (64, 128, 256, 512)
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="resnet")
    with pytest.raises(ValueError, match="pga"):
        ModelConfig(pga="spatial")
    with pytest.raises(ValueError, match="width"):
        ModelConfig(width=0)
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"in_channels": 2, "depth": 9})
    assert isinstance(build_model({"width": 0.125}, seed=0), ScoNetMT)


# -- parameter counts and names ---------------------------------------------------------------------


def test_parameter_counts_full_width():
    m1 = ScoNetMT(ModelConfig(in_channels=1))
    m2 = ScoNetMT(ModelConfig(in_channels=2))
    assert count_parameters(m1) == 7_014_592
    assert count_parameters(m2) == 7_015_168
    # 79 = 40 parameter tensors + 13 BatchNorm layers x (running_mean, running_var, num_batches_tracked)
    sd = m2.state_dict()
    assert len(sd) == STATE_DICT_ENTRIES == 79
    assert len(list(m2.parameters())) == 40
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 13
    drf = ScoNetMT(ModelConfig(arch="drf"))
    assert count_parameters(drf) - count_parameters(m2) == 6_404
    assert len(drf.state_dict()) == 83
    assert count_parameters(m2, trainable_only=True) == 7_015_168


def _expected_opengait_keys() -> list[str]:
    def bn(prefix):
        return [
            f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        ]

    fb = "Backbone.forward_block"
    keys = [f"{fb}.conv1.conv.weight", *bn(f"{fb}.bn1")]
    for i in range(1, 5):
        b = f"{fb}.layer{i}.0"
        keys += [f"{b}.conv1.weight", *bn(f"{b}.bn1"), f"{b}.conv2.weight", *bn(f"{b}.bn2")]
        if i > 1:
            keys += [f"{b}.downsample.0.weight", *bn(f"{b}.downsample.1")]
    keys += ["FCs.fc_bin", "BNNecks.fc_bin", *bn("BNNecks.bn1d")]
    return keys


def test_state_dict_uses_opengait_names_and_shapes():
    sd = ScoNetMT(ModelConfig()).state_dict()
    assert sorted(sd) == sorted(_expected_opengait_keys())
    assert sd["Backbone.forward_block.conv1.conv.weight"].shape == (64, 2, 3, 3)
    assert sd["Backbone.forward_block.layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["Backbone.forward_block.layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert sd["FCs.fc_bin"].shape == (16, 512, 256)
    assert sd["BNNecks.fc_bin"].shape == (16, 256, 3)
    assert sd["BNNecks.bn1d.weight"].shape == (4096,)
    drf = ScoNetMT(ModelConfig(arch="drf")).state_dict()
    assert sorted(set(drf) - set(sd)) == [
        "PGA.channel_attention.bias",
        "PGA.channel_attention.weight",
        "PGA.spatial_attention.bias",
        "PGA.spatial_attention.weight",
    ]


def test_seeded_init_is_deterministic_and_opengait_like():
    a, b, c = ScoNetMT(SMALL, seed=3), ScoNetMT(SMALL, seed=3), ScoNetMT(SMALL, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["FCs.fc_bin"], sc["FCs.fc_bin"])
    g = torch.Generator().manual_seed(3)
    assert torch.equal(ScoNetMT(SMALL, generator=g).state_dict()["FCs.fc_bin"], sa["FCs.fc_bin"])
    # BN weight ~ N(1, 0.02), bias 0; fc_bin within the 3-D Xavier bound of OpenGait
    full = ScoNetMT(ModelConfig(), seed=0)
    w = full.BNNecks.bn1d.weight.detach()
    assert abs(w.mean().item() - 1.0) < 0.005 and abs(w.std().item() - 0.02) < 0.003
    assert torch.count_nonzero(full.BNNecks.bn1d.bias) == 0
    bound = (6.0 / (512 * 256 + 16 * 256)) ** 0.5
    assert full.FCs.fc_bin.abs().max().item() <= bound
    # DRF built with the same seed shares every non-PGA weight (PGA is initialised last)
    drf = ScoNetMT(SMALL.replace(arch="drf"), seed=3).state_dict()
    assert all(torch.equal(sa[k], drf[k]) for k in sa)


# -- forward ----------------------------------------------------------------------------------------


def test_forward_shapes_5d():
    model = _small()
    x = torch.rand(2, 2, 3, 64, 44)
    with torch.no_grad():
        out = model(x)
    assert out.embeddings.shape == (2, 256, 16)
    assert out.logits.shape == (2, 3, 16)
    assert out.channel_gate is None and out.part_gate is None
    assert out.logits.abs().max() <= 1.0 + 1e-5  # cosine logits
    assert out.predict().shape == (2,)
    assert torch.equal(ScoNetMT.predict(out.logits), predict(out.logits))


def test_packed_variable_length_equals_per_sequence():
    model = _small()
    lengths = [3, 1, 5]
    g = torch.Generator().manual_seed(1)
    seqs = [torch.rand(t, 2, H, W, generator=g) for t in lengths]
    with torch.no_grad():
        packed = model(torch.cat(seqs), seq_lengths=torch.tensor(lengths))
        singles = [model(s.transpose(0, 1).unsqueeze(0)) for s in seqs]  # [1, C, T, H, W]
    torch.testing.assert_close(
        packed.embeddings, torch.cat([o.embeddings for o in singles]), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(packed.logits, torch.cat([o.logits for o in singles]), rtol=1e-5, atol=1e-5)


def test_packed_equal_lengths_equals_5d():
    model = _small()
    x = torch.rand(2, 2, 3, H, W, generator=torch.Generator().manual_seed(2))
    packed = x.transpose(1, 2).reshape(6, 2, H, W)
    with torch.no_grad():
        a, b = model(x), model(packed, seq_lengths=[3, 3])
    torch.testing.assert_close(a.logits, b.logits)


def test_temporal_max_pool_matches_loop_and_backprops():
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(9, 4, 2, 3, generator=g, requires_grad=True)
    lengths = [2, 4, 1, 2]
    out = temporal_max_pool(frames, lengths)
    ref = torch.stack([s.max(0)[0] for s in frames.split(lengths)])
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    # every output element receives its gradient exactly once, from the argmax frame
    assert frames.grad.sum().item() == pytest.approx(out.numel())
    assert set(frames.grad.unique().tolist()) <= {0.0, 1.0}


def test_horizontal_pool_is_mean_plus_max_per_strip():
    x = torch.randn(2, 3, 32, 5)
    out = horizontal_pool(x, 16)
    strip = x[:, :, 4:6, :].reshape(2, 3, -1)
    torch.testing.assert_close(out[:, :, 2], strip.mean(-1) + strip.max(-1)[0])
    with pytest.raises(ValueError, match="divisible"):
        horizontal_pool(torch.randn(1, 1, 20, 4), 16)


def test_training_step_backward_packed():
    model = ScoNetMT(SMALL, seed=0).train()
    out = model(torch.rand(5, 2, H, W), seq_lengths=[2, 3])
    (out.logits.sum() + out.embeddings.pow(2).mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_input_errors():
    model = _small()
    with pytest.raises(ValueError, match="seq_lengths"):
        model(torch.rand(4, 2, H, W))
    with pytest.raises(ValueError, match="sum to 3"):
        model(torch.rand(4, 2, H, W), seq_lengths=[1, 2])
    with pytest.raises(ValueError, match="at least one frame"):
        model(torch.rand(4, 2, H, W), seq_lengths=[4, 0])
    with pytest.raises(ValueError, match="C=2"):
        model(torch.rand(1, 1, 2, H, W))
    with pytest.raises(ValueError, match="divisible"):
        model(torch.rand(1, 2, 2, 48, W))


# -- DRF --------------------------------------------------------------------------------------------


def test_drf_gate_shapes_and_values():
    model = _small(arch="drf")
    pav = _pav(2)
    with torch.no_grad():
        out = model(torch.rand(2, 2, 2, H, W), pav=pav)
    assert out.channel_gate.shape == (2, 256, 1)
    assert out.part_gate.shape == (2, 1, 16)
    assert out.logits.shape == (2, 3, 16) and out.embeddings.shape == (2, 256, 16)
    for gate in (out.channel_gate, out.part_gate):
        assert ((gate > 0) & (gate < 1)).all()
    # align_corners=True: the first / last part gate is exactly the eyes / ankles pair's gate
    with torch.no_grad():
        z = model.PGA.spatial_attention(pav.transpose(1, 2))  # [N, 1, 8]
    torch.testing.assert_close(out.part_gate[..., 0], torch.sigmoid(z[..., 0]))
    torch.testing.assert_close(out.part_gate[..., -1], torch.sigmoid(z[..., -1]))
    assert count_parameters(model.PGA) == 24 * 256 + 256 + 3 + 1


def test_drf_gates_multiply_fc_features():
    model = _small(arch="drf")
    x, pav = torch.rand(2, 2, 2, H, W), _pav(2, 1)
    with torch.no_grad():
        out = model(x, pav=pav)
        plain = model.features(x)
    torch.testing.assert_close(out.embeddings, plain * out.channel_gate * out.part_gate)


@pytest.mark.parametrize("mode,channel,part", [("channel", True, False), ("part", False, True)])
def test_drf_single_gate_modes(mode, channel, part):
    model = _small(arch="drf", pga=mode)
    with torch.no_grad():
        out = model(torch.rand(1, 2, 2, H, W), pav=_pav(1))
    assert (out.channel_gate is not None) == channel
    assert (out.part_gate is not None) == part


def test_drf_without_gates_equals_sconet_with_same_weights():
    sconet = _small(seed=5)
    drf = ScoNetMT(SMALL.replace(arch="drf", pga="none"), seed=11).eval()
    report = load_opengait_state_dict(drf, sconet.state_dict(), allow_missing_pga=True)
    assert sorted(report.initialised) == sorted(k for k in drf.state_dict() if k.startswith("PGA."))
    x = torch.rand(6, 2, H, W, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = sconet(x, seq_lengths=[4, 2])
        b = drf(x, seq_lengths=[4, 2])  # no PAV needed when no gate is enabled
        c = drf(x, seq_lengths=[4, 2], pav=_pav(2))
    assert torch.equal(a.logits, b.logits) and torch.equal(a.embeddings, b.embeddings)
    assert torch.equal(a.logits, c.logits)
    assert b.channel_gate is None and b.part_gate is None
    # switching the gates on changes the output (same weights)
    gated = ScoNetMT(SMALL.replace(arch="drf"), seed=0).eval()
    gated.load_state_dict(drf.state_dict())
    with torch.no_grad():
        d = gated(x, seq_lengths=[4, 2], pav=_pav(2))
    assert not torch.allclose(a.embeddings, d.embeddings)


def test_drf_pav_errors():
    model = _small(arch="drf")
    x = torch.rand(2, 2, 1, H, W)
    with pytest.raises(ValueError, match="needs pav"):
        model(x)
    with pytest.raises(ValueError, match=r"pav must have shape \[N=2, 8, 3\]"):
        model(x, pav=torch.rand(2, 24))
    with pytest.raises(ValueError, match="pav must have shape"):
        model(x, pav=torch.rand(3, 8, 3))


# -- OpenGait checkpoints ---------------------------------------------------------------------------


def _to_opengait_2024(model: ScoNetMT) -> dict:
    """What an OpenGait DDP checkpoint in the 2024 class order would hold for ``model``."""
    sd = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    # column j of the 2024 classifier is class CLASS_ORDER_2024[j]
    inverse = class_permutation(CLASSES, CLASS_ORDER_2024)
    sd["module.BNNecks.fc_bin"] = sd["module.BNNecks.fc_bin"][..., list(inverse)]
    return {"model": sd, "optimizer": {}, "scheduler": {}, "iteration": 20000}


def test_class_permutation():
    assert class_permutation("2024") == (0, 2, 1)
    assert class_permutation("2025") == (0, 1, 2)
    assert class_permutation(CLASSES, "2024") == (0, 2, 1)
    with pytest.raises(ValueError, match="unknown class order"):
        class_permutation("2023")


def test_opengait_round_trip_2024_order():
    source = _small(seed=1)
    ckpt = _to_opengait_2024(source)
    x = torch.rand(8, 2, H, W, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = source(x, seq_lengths=[3, 2, 3])
        # a model loaded without the remap sees the 2024 columns: logits permuted
        raw = _small(seed=2)
        load_opengait_state_dict(raw, ckpt, class_order="2025")
        torch.testing.assert_close(raw(x, seq_lengths=[3, 2, 3]).logits, ref.logits[:, [0, 2, 1]])

        target = _small(seed=2)
        report = load_opengait_state_dict(target, ckpt, class_order="2024")
        out = target(x, seq_lengths=[3, 2, 3])
    assert report.stripped_prefixes == ["module."] and report.permutation == (0, 2, 1)
    torch.testing.assert_close(out.logits, ref.logits)
    assert torch.equal(out.predict(), ref.predict())
    # the remap did not alter the checkpoint dict passed in
    assert torch.equal(
        ckpt["model"]["module.BNNecks.fc_bin"], _to_opengait_2024(source)["model"]["module.BNNecks.fc_bin"]
    )


def test_plain_state_dict_loads_strictly():
    a, b = _small(seed=1), _small(seed=2)
    b.load_state_dict(a.state_dict(), strict=True)
    report = load_opengait_state_dict(b, a.state_dict())
    assert report.permutation is None and report.stripped_prefixes == []


def test_mismatched_checkpoint_raises_clear_error():
    silhouette = ScoNetMT(SMALL.replace(in_channels=1), seed=0).state_dict()
    silhouette["BNNecks.extra"] = torch.zeros(1)
    del silhouette["FCs.fc_bin"]
    model = _small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_opengait_state_dict(model, silhouette)
    msg = str(info.value)
    assert "missing keys (1): FCs.fc_bin" in msg
    assert "unexpected keys (1): BNNecks.extra" in msg
    assert (
        "shape mismatch for Backbone.forward_block.conv1.conv.weight: "
        "checkpoint [8, 1, 3, 3] vs model [8, 2, 3, 3]" in msg
    )
    assert info.value.missing == ["FCs.fc_bin"]
    assert isinstance(info.value, ValueError)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_drf_checkpoint_options():
    drf = _small(arch="drf", seed=3)
    sconet_sd = _small(seed=4).state_dict()
    with pytest.raises(CheckpointMismatchError, match="missing keys \\(4\\): PGA"):
        load_opengait_state_dict(drf, sconet_sd)
    # a foreign DRF checkpoint: attention_layer.* names, DDP prefix
    foreign = {"module." + k.replace("PGA.", "attention_layer."): v for k, v in drf.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match="attention_layer"):
        load_opengait_state_dict(_small(arch="drf", seed=9), foreign)
    target = _small(arch="drf", seed=9)
    report = load_opengait_state_dict(target, foreign, rename={"attention_layer.": "PGA."})
    assert len(report.renamed) == 4
    assert all(torch.equal(v, drf.state_dict()[k]) for k, v in target.state_dict().items())


def test_bnneck_batchnorm_keeps_opengait_momentum_and_eps():
    """BNNeck's BatchNorm1d updates its running statistics with PyTorch's (and OpenGait's)
    momentum 0.1 and eps 1e-5: checkpoints trained elsewhere evaluate the same here."""
    from sconet.models.layers import SeparateBNNecks

    neck = SeparateBNNecks(parts=4, in_channels=3, num_classes=3).train()
    torch.nn.init.normal_(neck.fc_bin)
    x = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(0)) * 2 + 1
    neck(x)
    flat = x.reshape(6, 12)
    bn = neck.bn1d
    torch.testing.assert_close(bn.running_mean, 0.1 * flat.mean(0))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * flat.var(0, unbiased=True))
    neck.eval()
    z = (flat - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5)
    want = torch.nn.functional.normalize(z.view(6, 3, 4).permute(2, 0, 1), dim=-1).matmul(
        torch.nn.functional.normalize(neck.fc_bin, dim=1)
    )
    torch.testing.assert_close(neck(x), want.permute(1, 2, 0))

"""Batches from a cache store: P x K sampling, frame draws, width cut, RAM/streamed, workers, eval order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sconet.stream import (
    Batch,
    FrameBank,
    PavNormalizer,
    TripletBatches,
    eval_batches,
    make_loader,
    to_device,
    width_cut,
)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def bank(small_store):
    return FrameBank(small_store, np.arange(small_store.n_sequences))


def _seq(store, i: int) -> np.ndarray:
    return width_cut(store.sequence(int(i)), 10)


def test_width_cut_shape_and_values():
    x = np.arange(2 * 64 * 64, dtype=np.int64).reshape(1, 2, 64, 64)
    y = width_cut(x, 10)
    assert y.shape == (1, 2, 64, 44)
    assert np.array_equal(y, x[..., 10:54])
    assert width_cut(x, 0) is x
    with pytest.raises(ValueError):
        width_cut(x, 32)


def test_bank_holds_cut_uint8_frames(bank, small_store):
    assert bank.in_ram and bank.frames.dtype == np.uint8
    assert bank.frame_shape == (2, 64, 44)
    assert bank.frames.shape == (small_store.n_frames, 2, 64, 44)
    for j in (0, 7, len(bank) - 1):
        a, b = bank.offsets[j], bank.offsets[j + 1]
        assert np.array_equal(bank.frames[a:b], _seq(small_store, bank.store_indices[j]))


def test_triplet_batch_properties(bank, small_store):
    p, k, f = 4, 3, 30
    ds = TripletBatches(bank, p, k, f, seed=0)
    batch = ds.batch(0)
    assert isinstance(batch, Batch)
    assert batch.frames.dtype == torch.uint8
    assert tuple(batch.frames.shape) == (p * k * f, 2, 64, 44)
    assert batch.seq_lengths.tolist() == [f] * (p * k)
    ids = batch.seq_ids.numpy().reshape(p, k)
    assert (ids == ids[:, :1]).all(), "K consecutive samples share one id"
    assert len(set(ids[:, 0])) == p, "P distinct ids"
    assert np.array_equal(batch.labels.numpy(), small_store.labels[batch.seq_ids.numpy()])

    # each sample: frames of its own sequence, drawn without replacement (T=40 >= 30)
    js = ds.rank_ids(0)
    local = ds.frame_indices(0, js)
    assert local.shape == (p * k, f)
    clips = batch.frames.numpy().reshape(p * k, f, 2, 64, 44)
    for row in range(p * k):
        assert len(set(local[row].tolist())) == f
        seq = _seq(small_store, bank.store_indices[js[row // k]])
        assert np.array_equal(clips[row], seq[local[row]])
    assert any(not np.array_equal(np.sort(r), r) for r in local), "drawn order is kept (not sorted)"

    x, lengths = to_device(batch, "cpu")
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.allclose(x, batch.frames.float() / 255)


def test_with_replacement_when_shorter(bank):
    ds = TripletBatches(bank, 2, 2, 60, seed=1)  # sequences have 40 frames
    local = ds.frame_indices(0, ds.rank_ids(0))
    assert local.shape == (4, 60)
    assert local.min() >= 0 and local.max() < 40
    assert all(len(set(r.tolist())) < 60 for r in local)


def test_no_cut_keeps_full_width(small_store):
    b = FrameBank(small_store, [0, 1, 2, 3], cut_pixels=0)
    batch = TripletBatches(b, 2, 2, 8, seed=0).batch(0)
    assert tuple(batch.frames.shape[1:]) == (2, 64, 64)


def test_deterministic_and_epoch_coverage(bank):
    a, b = TripletBatches(bank, 4, 2, 10, seed=3), TripletBatches(bank, 4, 2, 10, seed=3)
    for s in (0, 5, 11):
        assert torch.equal(a.batch(s).frames, b.batch(s).frames)
    assert not torch.equal(a.batch(0).frames, TripletBatches(bank, 4, 2, 10, seed=4).batch(0).frames)
    per_epoch = len(bank) // 4
    seen = np.concatenate([a.step_ids(s) for s in range(per_epoch)])
    assert len(seen) == len(set(seen.tolist())) == per_epoch * 4


def test_ranks_split_the_shared_ids(bank):
    whole = TripletBatches(bank, 4, 2, 10, seed=0)
    r0 = TripletBatches(bank, 4, 2, 10, seed=0, rank=0, world_size=2)
    r1 = TripletBatches(bank, 4, 2, 10, seed=0, rank=1, world_size=2)
    for s in range(3):
        assert np.array_equal(np.concatenate([r0.rank_ids(s), r1.rank_ids(s)]), whole.step_ids(s))
    with pytest.raises(ValueError):
        TripletBatches(bank, 3, 2, 10, world_size=2)
    with pytest.raises(ValueError):
        TripletBatches(bank, len(bank) + 1, 2, 10)


def test_streaming_equals_ram(small_store, bank):
    streamed = FrameBank(small_store, np.arange(small_store.n_sequences), max_ram_bytes=0)
    assert not streamed.in_ram and streamed.frames is None
    a, b = TripletBatches(bank, 4, 2, 12, seed=5), TripletBatches(streamed, 4, 2, 12, seed=5)
    for s in (0, 1):
        assert torch.equal(a.batch(s).frames, b.batch(s).frames)


def test_start_step_and_workers_give_the_same_stream(bank):
    ds = TripletBatches(bank, 4, 2, 6, seed=2)
    ref = [ds.batch(s) for s in range(2, 6)]
    it0 = make_loader(TripletBatches(bank, 4, 2, 6, seed=2, start_step=2), 0)
    got0 = [next(it0) for _ in range(4)]
    it2 = make_loader(TripletBatches(bank, 4, 2, 6, seed=2, start_step=2), 2)
    got2 = [next(it2) for _ in range(4)]
    del it2
    for r, a, b in zip(ref, got0, got2, strict=True):
        assert torch.equal(r.frames, a.frames) and torch.equal(r.frames, b.frames)
        assert torch.equal(r.seq_ids, b.seq_ids)


def test_eval_batches_whole_sequences_in_order(small_store):
    idx = np.arange(small_store.n_sequences)[::2]
    bank = FrameBank(small_store, idx, max_frames=25)
    seen = []
    for batch in eval_batches(bank, batch_size=8):
        assert len(batch.seq_lengths) <= 8
        offs = np.concatenate([[0], np.cumsum(batch.seq_lengths.numpy())])
        for q, sid in enumerate(batch.seq_ids.tolist()):
            seq = _seq(small_store, sid)[:25]
            assert np.array_equal(batch.frames.numpy()[offs[q] : offs[q + 1]], seq), "natural order, first 25"
            seen.append(sid)
    assert seen == idx.tolist()
    streamed = FrameBank(small_store, idx, max_frames=25, max_ram_bytes=0)
    for a, b in zip(eval_batches(bank, 8), eval_batches(streamed, 8), strict=True):
        assert torch.equal(a.frames, b.frames)


def test_pav_normalizer(small_store):
    norm = PavNormalizer.fit(small_store.pav)
    z = norm(small_store.pav)
    assert z.shape == small_store.pav.shape and z.min() >= 0 and z.max() <= 1
    again = PavNormalizer.from_state_dict(norm.state_dict())
    assert np.array_equal(again(small_store.pav), z)


def test_every_step_has_p_distinct_ids_across_epoch_boundaries(bank):
    """30 sequences, P = 4: 7 whole batches per epoch, the 2 left over wait for the next epoch
    (a partial last batch would give a step fewer than P ids)."""
    assert len(bank) == 30
    ds = TripletBatches(bank, 4, 2, 5, seed=3)
    assert ds.batches_per_epoch == 7
    for epoch in range(3):
        seen = np.concatenate([ds.step_ids(epoch * 7 + b) for b in range(7)])
        assert len(seen) == 28 and len(set(seen.tolist())) == 28
    for step in (6, 7, 13, 14):
        assert len(set(ds.step_ids(step).tolist())) == 4
        assert tuple(ds.batch(step).frames.shape) == (4 * 2 * 5, 2, 64, 44)

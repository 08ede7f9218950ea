from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DistributedSampler

from sparseift.data import BatchLoader, ByteBlockDataset, TensorPairDataset, shard_indices


def _dataset(n: int) -> TensorPairDataset:
    return TensorPairDataset(torch.arange(n).float()[:, None], torch.arange(n))


@pytest.mark.parametrize(("n", "world_size", "shuffle", "drop_last", "epoch"),
                         list(itertools.product([7, 12], [1, 3, 4], [True, False], [True, False], [0, 2])))
def test_shards_match_distributed_sampler(n: int, world_size: int, shuffle: bool, drop_last: bool, epoch: int) -> None:
    dataset = _dataset(n)
    for rank in range(world_size):
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=shuffle, seed=3, drop_last=drop_last)
        sampler.set_epoch(epoch)
        ours = shard_indices(n, rank=rank, world_size=world_size, shuffle=shuffle, seed=3, epoch=epoch,
                             drop_last=drop_last)
        assert ours.tolist() == list(sampler)


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_cover_every_index_exactly_once(world_size: int) -> None:
    dataset = _dataset(40)
    seen = []
    for rank in range(world_size):
        loader = BatchLoader(dataset, 3, seed=1, rank=rank, world_size=world_size)
        seen += [y for _, ys in loader for y in ys.tolist()]
    assert sorted(seen) == list(range(40))


def test_uneven_shards_pad_with_repeats_unless_drop_last() -> None:
    padded = [shard_indices(10, rank=r, world_size=4, seed=0) for r in range(4)]
    assert all(s.numel() == 3 for s in padded) and set(torch.cat(padded).tolist()) == set(range(10))
    dropped = [shard_indices(10, rank=r, world_size=4, seed=0, drop_last=True) for r in range(4)]
    assert all(s.numel() == 2 for s in dropped) and len(set(torch.cat(dropped).tolist())) == 8


def test_batches_drop_last_and_len() -> None:
    keep = BatchLoader(_dataset(10), 4, shuffle=False)
    assert [len(y) for _, y in keep] == [4, 4, 2] and len(keep) == 3
    drop = BatchLoader(_dataset(10), 4, drop_last=True)
    assert [len(y) for _, y in drop] == [4, 4] and len(drop) == 2


def test_epochs_are_seeded_and_resumable() -> None:
    loader = BatchLoader(_dataset(30), 4, seed=9)
    epoch0 = [y.tolist() for _, y in loader]
    loader.set_epoch(1)
    epoch1 = [y.tolist() for _, y in loader]
    assert epoch0 != epoch1
    assert [y.tolist() for _, y in BatchLoader(_dataset(30), 4, seed=9)] == epoch0
    assert [y.tolist() for _, y in loader.epoch_batches(1, start_batch=5)] == epoch1[5:]


def test_inputs_and_targets_stay_paired() -> None:
    for x, y in BatchLoader(_dataset(17), 5, seed=2):
        assert torch.equal(x[:, 0].long(), y)


def test_byte_blocks_batch_through_the_loader() -> None:
    blocks = ByteBlockDataset(torch.arange(41, dtype=torch.uint8), context_length=4)
    batches = list(BatchLoader(blocks, 3, shuffle=False, device="cpu"))
    assert len(batches) == 4 and batches[0][0].shape == (3, 4)
    assert batches[-1][0].tolist() == [[36, 37, 38, 39]] and batches[-1][1].tolist() == [[37, 38, 39, 40]]


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        BatchLoader(_dataset(4), 0)
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 2\)"):
        BatchLoader(_dataset(4), 1, rank=2, world_size=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_dataset_moves_to_the_device_once() -> None:
    loader = BatchLoader(_dataset(10), 4, device="cuda")
    assert loader.dataset.device.type == "cuda"
    assert all(x.is_cuda and y.is_cuda for x, y in loader)

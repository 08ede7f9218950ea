"""DDP through torch.distributed (gloo, 2 CPU processes) equals one process with the same global batch."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparseift.train import config_from_dict


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data: dict, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    from tests.train import conftest  # noqa: F401  (registers the synthetic dataset and model)
    from sparseift.sparsity import get_masks
    from sparseift.train import Trainer

    trainer = Trainer(config_from_dict(data))
    trainer.fit()
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    state.update({f"mask:{k}": v.clone() for k, v in get_masks(trainer.model).items()})
    torch.save(state, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tiny_config: dict, tmp_path) -> None:  # noqa: ANN001
    data = copy.deepcopy(tiny_config)
    data["model"]["kwargs"]["batchnorm"] = False  # per-rank BatchNorm statistics differ by design
    data["data"]["augment"] = False
    data["train"]["epochs"] = 2
    single = copy.deepcopy(data)
    data["data"]["batch_size"] = 16  # per rank: global batch 32 = single process batch
    data["name"] = "ddp"
    mp.spawn(_worker, args=(2, _free_port(), data, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    from sparseift.train import Trainer

    reference = Trainer(config_from_dict(single))
    reference.fit()
    ref_state = reference.model.state_dict()
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), f"ranks differ at {key}"
        if key.startswith("mask:"):
            continue
        torch.testing.assert_close(value, ref_state[key], rtol=1e-4, atol=1e-5, msg=f"DDP differs at {key}")
    masks = [k for k in ranks[0] if k.startswith("mask:")]
    assert masks and all(torch.equal(ranks[0][k], ref_state[k.removeprefix("mask:") + "_mask"]) for k in masks)

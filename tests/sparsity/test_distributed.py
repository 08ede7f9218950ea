"""DDP: 2 CPU processes (gloo) hold identical masks, equal to one process on the global batch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sparseift.sparsity import SET, RigL, get_masks

STEPS, GLOBAL_BATCH = 6, 16
METHODS = {"RigL": RigL, "SET": SET}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


def _train(model: nn.Module, method: str, rank: int, world: int) -> dict[str, torch.Tensor]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = METHODS[method](model, opt, sparsity=0.8, total_steps=STEPS, delta_t=2, end_step=STEPS, seed=5)
    share = GLOBAL_BATCH // world
    for step in range(STEPS):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(GLOBAL_BATCH, 10, generator=g), torch.randn(GLOBAL_BATCH, 4, generator=g)
        x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
        sparsifier.step()
    return {name: mask.clone() for name, mask in get_masks(sparsifier.model).items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for method in METHODS:
            model = nn.parallel.DistributedDataParallel(_model())
            torch.save(_train(model, method, rank, world), Path(out) / f"{method}_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_agree_with_one_process(tmp_path: Path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for method, cls in METHODS.items():
        ranks = [torch.load(tmp_path / f"{method}_rank{r}.pt", weights_only=True) for r in range(2)]
        single = _train(_model(), method, 0, 1)
        initial_model = _model()
        cls(initial_model, None, sparsity=0.8, total_steps=STEPS, delta_t=2, seed=5)
        initial = get_masks(initial_model)
        assert set(ranks[0]) == set(single) == {"2.weight"}
        for name, mask in single.items():
            assert torch.equal(ranks[0][name], ranks[1][name]), method
            assert torch.equal(ranks[0][name], mask), method
            assert not torch.equal(mask, initial[name]), method  # the masks did change

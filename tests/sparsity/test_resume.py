"""Resume across a mask update is bit-exact (checkpoints read with weights_only=True)."""

import pytest
import torch

from sparseift.sparsity import SET, GraNet, RigL
from tests.sparsity._helpers import small_cnn, train_step

CASES = {
    "set_sgd": (SET, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4)),
    "rigl_adamw": (RigL, lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)),
    "granet_sgd": (GraNet, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
}


def _build(case: str, init_seed: int):
    method, make_opt = CASES[case]
    torch.manual_seed(init_seed)
    model = small_cnn()
    opt = make_opt(model.parameters())
    sparsifier = method(model, opt, sparsity=0.8, total_steps=12, delta_t=3, seed=init_seed)
    return model, opt, sparsifier


@pytest.mark.parametrize("case", list(CASES))
def test_resume_is_bit_exact(case: str, tmp_path) -> None:
    model_a, opt_a, sp_a = _build(case, 0)
    for step in range(10):
        train_step(model_a, opt_a, sp_a, step)

    model_b, opt_b, sp_b = _build(case, 0)
    for step in range(4):
        train_step(model_b, opt_b, sp_b, step)
    torch.save({"model": model_b.state_dict(), "opt": opt_b.state_dict(), "sparsifier": sp_b.state_dict()},
               tmp_path / "ckpt.pt")

    model_c, opt_c, sp_c = _build(case, 123)  # another init and seed: everything must come from the file
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["opt"])
    sp_c.load_state_dict(ckpt["sparsifier"])
    for step in range(4, 10):  # updates at 6 and 9
        train_step(model_c, opt_c, sp_c, step)

    for (name, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        assert torch.equal(a, c), name
    for pa, pc in zip(model_a.parameters(), model_c.parameters()):
        for key, value in opt_a.state[pa].items():
            assert torch.equal(value, opt_c.state[pc][key]), key
    assert sp_a.state_dict()["step"] == sp_c.state_dict()["step"] == 10
    assert torch.equal(sp_a.generator.get_state(), sp_c.generator.get_state())


def test_checkpoint_of_another_method_is_refused() -> None:
    _, _, rigl = _build("rigl_adamw", 0)
    _, _, set_ = _build("set_sgd", 0)
    with pytest.raises(ValueError, match="checkpoint method='RigL' differs"):
        set_.load_state_dict(rigl.state_dict())


def test_masks_loaded_into_the_model_alone_are_followed() -> None:
    model_a, opt_a, sp_a = _build("set_sgd", 0)
    model_b, opt_b, sp_b = _build("set_sgd", 1)
    model_b.load_state_dict(model_a.state_dict())  # masks come with the model's state_dict
    train_step(model_b, opt_b, sp_b, 0)
    for name, mask in sp_b.masks.items():
        assert torch.equal(mask, sp_a.masks[name])
        assert torch.all(model_b.get_parameter(name)[~mask] == 0)
        assert torch.count_nonzero(model_b.get_parameter(name)[mask]) == int(mask.sum())

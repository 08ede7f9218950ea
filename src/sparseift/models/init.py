"""The paper's initialisation and weight-decay recipe (section 8, appendix C.2).

For the CIFAR-100 and ImageNet ResNets the paper uses Kaiming initialisation, zero-init of
the last BatchNorm gamma of each residual branch (Goyal et al. 2017: every block starts as
the identity) and no weight decay on biases and BatchNorm parameters. These helpers apply
the recipe to any model, ours or a reused torchvision/timm definition.
"""

from __future__ import annotations

from torch import nn

__all__ = ["NORM_LAYERS", "kaiming_init", "residual_blocks", "zero_init_last_bn", "param_groups"]

NORM_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
"""Normalisation layers: their parameters get no weight decay."""

def kaiming_init(model: nn.Module) -> None:
    """Kaiming-normal convs (fan-out, ReLU gain; He et al. 2015) with zero bias, unit norms.

    Every ``nn.Conv2d`` gets ``N(0, 2 / (k_h k_w c_out / groups))``, every BatchNorm /
    GroupNorm / LayerNorm gamma 1 and beta 0. Linear layers and embeddings keep their own
    initialisation. Torchvision's ResNets and MobileNetV2 and timm's ByobNet models use the
    same rule for convs, so this also re-initialises them after widening.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NORM_LAYERS) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def residual_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The residual blocks of ``model``, by name.

    A residual block is recognised by its shortcut path: a ``downsample`` attribute
    (torchvision's ``BasicBlock`` / ``Bottleneck``: a projection, or ``None`` for the
    identity) or a ``shortcut`` module (our :class:`~sparseift.models.resnet_cifar.BasicBlock`;
    timm's ByobNet blocks, where ``shortcut = None`` means the block has no residual
    connection and is therefore not a residual block).
    """
    return {
        name: module
        for name, module in model.named_modules()
        if hasattr(module, "downsample") or isinstance(getattr(module, "shortcut", None), nn.Module)
    }


def zero_init_last_bn(model: nn.Module) -> list[str]:
    """Set gamma = 0 in the last BatchNorm of each residual branch; returns their names.

    The residual branch of a block (see :func:`residual_blocks`) is everything in it but its
    shortcut path; its last BatchNorm is taken in registration order, which is the order the
    layers run in for torchvision's, timm's and our blocks (``bn2`` of a BasicBlock, ``bn3``
    of a Bottleneck). Each block then starts as its shortcut (Goyal et al. 2017).
    """
    names = []
    for block_name, block in residual_blocks(model).items():
        shortcut = [m for attr in ("shortcut", "downsample") if isinstance(m := getattr(block, attr, None), nn.Module)]
        in_shortcut = {id(m) for path in shortcut for m in path.modules()}
        norms = [
            (name, m)
            for name, m in block.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in in_shortcut and m.weight is not None
        ]
        if norms:
            name, last = norms[-1]
            nn.init.zeros_(last.weight)
            names.append(f"{block_name}.{name}" if block_name else name)
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer parameter groups: decayed weights, and biases + norm parameters at 0.

    Group 0 holds every parameter with two or more dimensions that does not belong to a
    normalisation layer (conv and linear weights, embeddings, a tied LM head once) with
    ``weight_decay``; group 1 holds biases, every 1-D parameter and all parameters of
    BatchNorm / LayerNorm / GroupNorm with weight decay 0 (the paper: "no weight decay on
    biases and BN"). Embeddings are decayed, as nanoGPT does; a tied LM head and token
    embedding are one parameter and must sit in one group anyway.
    Each group also lists its ``param_names``. Frozen parameters are left out.

    Example::

        torch.optim.SGD(param_groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True)
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a real number >= 0, got {weight_decay!r}")
    in_norm = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    decay: dict[str, nn.Parameter] = {}
    no_decay: dict[str, nn.Parameter] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = no_decay if param.ndim < 2 or id(param) in in_norm else decay
        group[name] = param
    return [
        {"params": list(decay.values()), "param_names": list(decay), "weight_decay": float(weight_decay)},
        {"params": list(no_decay.values()), "param_names": list(no_decay), "weight_decay": 0.0},
    ]

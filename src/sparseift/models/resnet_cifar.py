"""CIFAR-style ResNets (He et al. 2016) as in the paper's CIFAR-100 runs (section 8).

A 3x3 stride-1 stem without max-pool, stages of BasicBlocks with widths ``w, 2w, 4w, ...``
(``w = 64`` in the paper; smaller for CPU runs), stride 2 between stages, global average
pooling and a linear classifier. ResNet-18/34 have four stages (2-2-2-2 and 3-4-6-3
blocks); the Fashion-MNIST proxy of the CPU main job has three stages of one block.
Any input size works (32x32 CIFAR, 28x28 Fashion-MNIST), with ``in_channels`` channels.

Initialisation follows the paper's recipe (:mod:`sparseift.models.init`): Kaiming normal
for convs, BatchNorm gamma 1 / beta 0, and gamma 0 for the last BatchNorm of each residual
branch, so every block starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparseift._checks import check_positive_int
from sparseift.models.init import kaiming_init, zero_init_last_bn
from sparseift.models.widths import check_width_multiplier, scaled_width

__all__ = ["BasicBlock", "CifarResNet", "cifar_resnet"]


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and ReLU, and a 1x1 projection shortcut when shapes change."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: 3x3 stem, no max-pool, stage ``i`` has ``blocks[i]`` BasicBlocks.

    Stage ``i`` (``layer{i+1}``) has width ``width * 2**i`` times ``width_multiplier``,
    rounded half up (:func:`~sparseift.models.widths.scaled_width`), and stride 2 except
    the first. The classifier's output (``num_classes``) does not scale.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        num_classes: int = 100,
        width: int = 64,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("blocks must name at least one stage, got an empty sequence")
        for count in blocks:
            check_positive_int("blocks[i]", count)
        multiplier = check_width_multiplier(width_multiplier)
        widths = [scaled_width(width * 2**i, multiplier) for i in range(len(blocks))]
        self.conv1 = nn.Conv2d(check_positive_int("in_channels", in_channels), widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(blocks)))
        channels = widths[0]
        for i, (count, out) in enumerate(zip(blocks, widths)):
            layers = [BasicBlock(channels, out, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(out, out, stride=1) for _ in range(count - 1)]
            self.add_module(self.stage_names[i], nn.Sequential(*layers))
            channels = out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, check_positive_int("num_classes", num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convs, unit BatchNorm, zero gamma of each residual branch's last BN."""
        kaiming_init(self)
        zero_init_last_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet(
    depth: int, num_classes: int = 100, width: int = 64, in_channels: int = 3, width_multiplier: float = 1.0
) -> CifarResNet:
    """CIFAR ResNet-18 (``depth=18``, blocks 2-2-2-2) or ResNet-34 (3-4-6-3)."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    if depth not in blocks:
        raise ValueError(f"depth must be one of {sorted(blocks)}, got {depth!r}")
    return CifarResNet(
        blocks[depth], num_classes=num_classes, width=width, in_channels=in_channels, width_multiplier=width_multiplier
    )

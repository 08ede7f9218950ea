"""CIFAR-style ResNet-18/34 (He et al. 2016) as in the paper's CIFAR-100 runs (section 8).

A 3x3 stride-1 stem without max-pool, four stages of BasicBlocks with widths
``w, 2w, 4w, 8w`` (``w = 64`` in the paper; smaller for CPU runs), global average
pooling and a linear classifier. Initialisation follows the paper's recipe: Kaiming
normal for convs, BatchNorm gamma 1 / beta 0, and gamma 0 for the last BatchNorm of each
residual branch, so every block starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn

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
    """ResNet for small images: 3x3 stem, no max-pool, stages of ``blocks`` BasicBlocks."""

    def __init__(
        self, blocks: tuple[int, int, int, int], num_classes: int = 100, width: int = 64, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, channels = [], width
        for i, count in enumerate(blocks):
            out = width * 2**i
            layers = [BasicBlock(channels, out, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(out, out, stride=1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convs, unit BatchNorm, zero gamma of each residual branch's last BN."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_resnet(depth: int, num_classes: int = 100, width: int = 64, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-18 (``depth=18``, blocks 2-2-2-2) or ResNet-34 (3-4-6-3)."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    if depth not in blocks:
        raise ValueError(f"depth must be one of {sorted(blocks)}, got {depth!r}")
    return CifarResNet(blocks[depth], num_classes=num_classes, width=width, in_channels=in_channels)

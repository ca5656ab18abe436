"""CIFAR ResNets (He et al. 2016): ResNet-18 and ResNet-20, with BatchNorm or GroupNorm."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional

Norm = Literal["batch", "group"]
Shortcut = Literal["pad", "projection"]


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with ``gcd(32, channels)`` groups: what Opacus puts in place of a BatchNorm.

    ``opacus.validators.ModuleValidator.fix`` swaps each ``BatchNorm2d(C)`` for
    ``GroupNorm(gcd(32, C), C)`` (32 groups as in Wu and He 2018 where C allows it), so the
    ``-gn`` variants are the networks that ``fix`` would make of the BatchNorm ones. The
    group count always divides C: 16-channel layers get 16 groups (one channel each).

    Parameters
    ----------
    channels : int
        Number of channels to normalize.

    Returns
    -------
    torch.nn.GroupNorm
        An affine GroupNorm (per-channel scale and shift, like BatchNorm's).

    """
    return nn.GroupNorm(math.gcd(32, channels), channels)


def federated_batch_norm(channels: int) -> nn.BatchNorm2d:
    """``BatchNorm2d(channels)`` without its ``num_batches_tracked`` counter in the state dict.

    With a fixed momentum (0.1, the default) BatchNorm never reads the counter, but as a
    state-dict entry it would be aggregated like a weight: an int64 value that FedAvg turns
    into a float, and that grows by every local step, far past what a CKKS encoding of
    model drift carries (``ckks-update-bound``). The running mean and variance stay in the
    state dict and are averaged like weights. The layer stays a plain ``BatchNorm2d``, so
    Opacus still recognises (and refuses) it.
    """
    layer = nn.BatchNorm2d(channels)
    layer.num_batches_tracked = None
    layer._register_load_state_dict_pre_hook(_drop_counter)
    return layer


def _drop_counter(state_dict: dict[str, object], prefix: str, *_: object) -> None:
    # BatchNorm adds a counter to a state dict without version metadata before this hook.
    state_dict.pop(prefix + "num_batches_tracked", None)


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """:func:`federated_batch_norm` for ``"batch"``, :func:`group_norm` for ``"group"``.

    Raises
    ------
    ValueError
        If ``norm`` is neither.

    """
    if norm == "batch":
        return federated_batch_norm(channels)
    if norm == "group":
        return group_norm(channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and append zero channels (no parameters)."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x[:, :, ::stride, ::stride]`` with ``extra_channels`` zero channels after."""
        return functional.pad(
            x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra_channels)
        )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016, Fig. 2).

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels.
    stride : int
        Stride of the first convolution (2 halves the feature map).
    norm : {"batch", "group"}
        The normalization after each convolution.
    shortcut : {"pad", "projection"}
        When the shape changes: zero-padding identity (option A) or a strided 1x1 convolution
        with normalization (option B). Same-shaped blocks use the identity either way.

    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: Norm, shortcut: Shortcut) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = norm_layer(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            if shortcut == "pad":
                self.shortcut = PadShortcut(stride, c_out - c_in)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), norm_layer(norm, c_out)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(F(x) + shortcut(x))``."""
        out = functional.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        result: torch.Tensor = functional.relu(out + self.shortcut(x))
        return result


class CifarResNet(nn.Module):
    """A ResNet for small images: 3x3 stride-1 stem, stages of BasicBlocks, average pool.

    There is no 7x7 stem and no max-pool (the ImageNet front end would shrink 32x32 inputs
    to 8x8 at once). Each stage after the first halves the feature map with a stride-2
    block; adaptive average pooling to 1x1 before the linear head makes any input size
    work, down to 8x8.

    Parameters
    ----------
    input_shape : tuple[int, ...]
        ``(channels, height, width)`` of one image.
    num_classes : int
        Number of output logits.
    widths : tuple[int, ...]
        Channels of each stage; the stem outputs ``widths[0]``.
    blocks : int
        BasicBlocks per stage.
    norm : {"batch", "group"}
        BatchNorm (the papers' choice) or :func:`group_norm` (for DP-SGD).
    shortcut : {"pad", "projection"}
        Option A or B shortcuts where a block changes shape (see :class:`BasicBlock`).

    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths: tuple[int, ...],
        blocks: int,
        norm: Norm,
        shortcut: Shortcut,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False),
            norm_layer(norm, widths[0]),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        c_in = widths[0]
        for index, width in enumerate(widths):
            first_stride = 1 if index == 0 else 2
            stages.append(
                nn.Sequential(
                    *(
                        BasicBlock(
                            c_in if b == 0 else width,
                            width,
                            first_stride if b == 0 else 1,
                            norm,
                            shortcut,
                        )
                        for b in range(blocks)
                    )
                )
            )
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # He initialization, as the paper and torchvision
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        logits: torch.Tensor = self.head(self.stages(self.stem(x)))
        return logits


class ResNet18(CifarResNet):
    """ResNet-18, CIFAR variant (11,173,962 parameters on 3x32x32 inputs with 10 classes).

    BasicBlocks ``[2, 2, 2, 2]`` of widths 64/128/256/512 behind a 3x3 stride-1 stem, as in
    the common CIFAR adaptation of He et al. 2016; shape-changing blocks use 1x1 projection
    shortcuts (option B), as the ImageNet ResNet-18 does.

    Parameters
    ----------
    input_shape : tuple[int, ...]
        ``(channels, height, width)`` of one image.
    num_classes : int
        Number of output logits.
    norm : {"batch", "group"}
        BatchNorm (default) or GroupNorm (:class:`ResNet18GN`).

    """

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, norm: Norm = "batch"
    ) -> None:
        super().__init__(input_shape, num_classes, (64, 128, 256, 512), 2, norm, "projection")


class ResNet18GN(ResNet18):
    """:class:`ResNet18` with GroupNorm (:func:`group_norm`) in place of BatchNorm, for DP-SGD."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(input_shape, num_classes, norm="group")


class ResNet20(CifarResNet):
    """ResNet-20 of He et al. 2016, section 4.2 (269,722 parameters on 3x32x32 with 10 classes).

    Three stages of three BasicBlocks, widths 16/32/64 (6n+2 layers with n = 3). The
    shortcuts are option A, zero-padding identities (:class:`PadShortcut`), as the paper
    uses for CIFAR: they add no parameters, so the count is the paper's 0.27M and the
    network is the one its CIFAR results were reported for (option B's 1x1 projections
    would add 2,752 parameters).

    Parameters
    ----------
    input_shape : tuple[int, ...]
        ``(channels, height, width)`` of one image.
    num_classes : int
        Number of output logits.
    norm : {"batch", "group"}
        BatchNorm (default) or GroupNorm (:class:`ResNet20GN`).

    """

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, norm: Norm = "batch"
    ) -> None:
        super().__init__(input_shape, num_classes, (16, 32, 64), 3, norm, "pad")


class ResNet20GN(ResNet20):
    """:class:`ResNet20` with GroupNorm (:func:`group_norm`) in place of BatchNorm, for DP-SGD."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(input_shape, num_classes, norm="group")

"""TASED-Net (Min & Corso, ICCV 2019): an S3D encoder and a temporal-aggregation decoder.

Module names and parameter shapes follow the released checkpoint exactly (see
``tests/data/tased_state_dict.tsv``) so that ``TASED_updated.pt`` loads unchanged. The
Mixed blocks are one parameterised class driven by a configuration table.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 1e-3


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class BasicConv3d(nn.Module):
    """Conv3d -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, bias=False)
        self.bn = _bn(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class SepConv3d(nn.Module):
    """Separable 3-D conv: spatial (1,k,k) then temporal (k,1,1), each with BN and ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv_s = nn.Conv3d(cin, cout, (1, kernel, kernel), (1, stride, stride), (0, padding, padding), bias=False)
        self.bn_s = _bn(cout)
        self.relu_s = nn.ReLU(inplace=True)
        self.conv_t = nn.Conv3d(cout, cout, (kernel, 1, 1), (stride, 1, 1), (padding, 0, 0), bias=False)
        self.bn_t = _bn(cout)
        self.relu_t = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu_s(self.bn_s(self.conv_s(x)))
        return self.relu_t(self.bn_t(self.conv_t(x)))


class MixedConfig(NamedTuple):
    cin: int
    b0: int
    b1a: int
    b1b: int
    b2a: int
    b2b: int
    b3: int

    @property
    def cout(self) -> int:
        return self.b0 + self.b1b + self.b2b + self.b3


MIXED: dict[str, MixedConfig] = {
    "3b": MixedConfig(192, 64, 96, 128, 16, 32, 32),
    "3c": MixedConfig(256, 128, 128, 192, 32, 96, 64),
    "4b": MixedConfig(480, 192, 96, 208, 16, 48, 64),
    "4c": MixedConfig(512, 160, 112, 224, 24, 64, 64),
    "4d": MixedConfig(512, 128, 128, 256, 24, 64, 64),
    "4e": MixedConfig(512, 112, 144, 288, 32, 64, 64),
    "4f": MixedConfig(528, 256, 160, 320, 32, 128, 128),
    "5b": MixedConfig(832, 256, 160, 320, 32, 128, 128),
    "5c": MixedConfig(832, 384, 192, 384, 48, 128, 128),
}


class Mixed(nn.Module):
    """The S3D inception block: four branches concatenated on channels."""

    def __init__(self, cfg: MixedConfig) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv3d(cfg.cin, cfg.b0, 1))
        self.branch1 = nn.Sequential(BasicConv3d(cfg.cin, cfg.b1a, 1), SepConv3d(cfg.b1a, cfg.b1b, 3, 1, 1))
        self.branch2 = nn.Sequential(BasicConv3d(cfg.cin, cfg.b2a, 1), SepConv3d(cfg.b2a, cfg.b2b, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), BasicConv3d(cfg.cin, cfg.b3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


def _mixed(*names: str) -> nn.Sequential:
    return nn.Sequential(*(Mixed(MIXED[n]) for n in names))


def _deconv(cin: int, cout: int, kernel, stride=1, padding=0) -> nn.ConvTranspose3d:
    return nn.ConvTranspose3d(cin, cout, kernel, stride, padding, bias=False)


class TASEDNet(nn.Module):
    """Maps a window (B, 3, 32, H, W) in [-1, 1] to the saliency of its last frame, (B, H, W) in (0, 1).

    H and W must be multiples of 32.
    """

    def __init__(self) -> None:
        super().__init__()
        self.base1 = nn.Sequential(
            SepConv3d(3, 64, 7, 2, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            BasicConv3d(64, 64, 1),
            SepConv3d(64, 192, 3, 1, 1),
        )
        self.maxp2 = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.maxm2 = nn.MaxPool3d((4, 1, 1), (4, 1, 1))
        self.maxt2 = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1), return_indices=True)
        self.base2 = _mixed("3b", "3c")
        self.maxp3 = nn.MaxPool3d((3, 3, 3), (2, 2, 2), (1, 1, 1))
        self.maxm3 = nn.MaxPool3d((4, 1, 1), (4, 1, 1))
        self.maxt3 = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1), return_indices=True)
        self.base3 = _mixed("4b", "4c", "4d", "4e", "4f")
        self.maxt4 = nn.MaxPool3d((2, 1, 1), (2, 1, 1))
        self.maxp4 = nn.MaxPool3d((1, 2, 2), (1, 2, 2), return_indices=True)
        self.base4 = _mixed("5b", "5c")

        self.convtsp1 = nn.Sequential(
            nn.Conv3d(1024, 1024, 1, bias=False),
            _bn(1024),
            nn.ReLU(inplace=True),
            _deconv(1024, 832, (1, 3, 3), 1, (0, 1, 1)),
            _bn(832),
            nn.ReLU(inplace=True),
        )
        self.unpool1 = nn.MaxUnpool3d((1, 2, 2), (1, 2, 2))
        self.convtsp2 = nn.Sequential(_deconv(832, 480, (1, 3, 3), 1, (0, 1, 1)), _bn(480), nn.ReLU(inplace=True))
        self.unpool2 = nn.MaxUnpool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.convtsp3 = nn.Sequential(_deconv(480, 192, (1, 3, 3), 1, (0, 1, 1)), _bn(192), nn.ReLU(inplace=True))
        self.unpool3 = nn.MaxUnpool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.convtsp4 = nn.Sequential(
            _deconv(192, 64, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
            _bn(64),
            nn.ReLU(inplace=True),
            nn.Conv3d(64, 64, (2, 1, 1), (2, 1, 1), bias=False),
            _bn(64),
            nn.ReLU(inplace=True),
            _deconv(64, 4, 1),
            _bn(4),
            nn.ReLU(inplace=True),
            nn.Conv3d(4, 4, (2, 1, 1), (2, 1, 1), bias=False),
            _bn(4),
            nn.ReLU(inplace=True),
            _deconv(4, 4, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(4, 1, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.base1(x)
        return self.forward_from(a, self.base2(self.maxp2(a)))

    def forward_from(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The rest of the network from ``a = base1(x)`` and ``b = base2(maxp2(a))``.

        Its own method so that the engine's window reuse, which builds ``a`` and ``b`` from
        features shared between overlapping windows, runs exactly the same rest.
        """
        a_t = self.maxm2(a)
        _, i2 = self.maxt2(a_t)
        y = self.maxp3(b)
        b_t = self.maxm3(b)
        _, i1 = self.maxt3(b_t)
        c = self.base3(y)
        y = self.maxt4(c)
        y, i0 = self.maxp4(y)
        d = self.base4(y)

        z = self.convtsp1(d)
        z = self.unpool1(z, i0)
        z = self.unpool2(self.convtsp2(z), i1, b_t.size())
        z = self.unpool3(self.convtsp3(z), i2, a_t.size())
        z = self.convtsp4(z)
        return z.view(z.size(0), z.size(3), z.size(4))

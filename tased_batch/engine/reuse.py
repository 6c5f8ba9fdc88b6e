"""Exact window reuse: the first two stages of TASED-Net computed once per sequence, not once per window.

``base1`` (with ``maxp2``) and ``base2`` mix time only through small kernels padded at the
window's edges. A feature at temporal position q of the window starting at frame s equals
the same feature computed over the whole sequence without padding ("long" features,
position k = m + q with s = phase + 2m: conv1's temporal stride 2 makes two phases)
whenever q's receptive field stays inside the window. Per window only the positions that
touch the padding are recomputed, from the window's own inputs and batched across windows:
``a = base1(x)`` at q 0..2 and 14..15, ``b = base2(maxp2(a))`` at q 0..4 and 12..15. The
rest (``maxp3``, ``base3``, ``base4``, the decoder) runs per window as always
(:meth:`TASEDNet.forward_from`). Maps equal the plain path's within float rounding.

A stream holds one :class:`SequenceCache` per sequence its windows slide over: its frames
in time order, and the time-reversed first 62 frames (the reversed head windows). Caches
keep features only for positions a remaining window needs, plus :data:`LOOKAHEAD` positions
computed ahead, so memory per stream is bounded whatever the video's length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tased_batch.model import WINDOW

# Positions per phase computed ahead of the windows asking, so that the long convolutions
# run on a few positions at a time rather than one or two.
LOOKAHEAD = 4
HEAD = 2 * WINDOW - 2  # frames of the reversed head sequence (frame i < 31 uses frames i+31..i)
A_EDGES = (3, 2)  # positions of a = base1(x) that touch the window's padding, left and right
B_EDGES = (5, 4)  # the same for b = base2(maxp2(a))
POSITIONS = WINDOW // 2
LEVELS = ("u", "a", "m3b", "b")  # the long features kept per phase, each one temporal kernel above the last


def _tconv(conv: torch.nn.Conv3d, x: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
    """A temporal conv with its zero padding only on the sides asked (none: the long, valid form)."""
    p = int(conv.padding[0])
    x = F.pad(x, (0, 0, 0, 0, p if left else 0, p if right else 0))
    return F.conv3d(x, conv.weight, conv.bias, conv.stride, (0, *conv.padding[1:]))


def _sep(m: Any, x: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
    x = m.relu_s(m.bn_s(m.conv_s(x)))
    return m.relu_t(m.bn_t(_tconv(m.conv_t, x, left, right)))


def _mixed(m: Any, x: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
    """A Mixed block with one-sided (or no) temporal padding; branch0 is cropped to the others' length."""
    b0 = m.branch0(x)
    b1 = _sep(m.branch1[1], m.branch1[0](x), left, right)
    b2 = _sep(m.branch2[1], m.branch2[0](x), left, right)
    pooled = F.pad(x, (0, 0, 0, 0, int(left), int(right)), value=float("-inf"))
    b3 = m.branch3[1](F.max_pool3d(pooled, 3, 1, (0, 1, 1)))
    t = b0.shape[2]
    b0 = b0[:, :, (0 if left else 1) : t - (0 if right else 1)]
    return torch.cat([b0, b1, b2, b3], 1)


class Stages:
    """The first two stages of a TASED-Net, cut at each temporal mixing so that any padding can be left out.

    The cuts: ``s1`` (conv1's spatial half, per frame) -> ``u`` (conv1's temporal half, pool,
    1x1 conv, SepConv's spatial half) -> ``a`` (SepConv's temporal half) -> ``m3b`` (maxp2,
    Mixed_3b) -> ``b`` (Mixed_3c). Each step mixes at most one temporal kernel's reach.
    """

    def __init__(self, net: torch.nn.Module, memory_format: torch.memory_format) -> None:
        self.net: Any = net  # a TASEDNet (or its BatchNorm-folded copy): submodules by the checkpoint's names
        self.format = memory_format

    def s1(self, frames: torch.Tensor) -> torch.Tensor:
        """(3, T, H, W) -> (64, T, H/2, W/2); it mixes no time."""
        conv = self.net.base1[0]
        x = frames[None].contiguous(memory_format=self.format)
        return conv.relu_s(conv.bn_s(conv.conv_s(x)))[0]

    def u(self, s1: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
        """(B, 64, T frames, ...) -> (B, 192, positions, H/4, W/4): conv1 (k7, stride 2) and on to SepConv's spatial half."""
        base1 = self.net.base1
        conv, sep = base1[0], base1[3]
        x = conv.relu_t(conv.bn_t(_tconv(conv.conv_t, s1, left, right)))
        return sep.relu_s(sep.bn_s(sep.conv_s(base1[2](base1[1](x)))))

    def a(self, u: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
        sep = self.net.base1[3]
        return sep.relu_t(sep.bn_t(_tconv(sep.conv_t, u, left, right)))

    def m3b(self, a: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
        return _mixed(self.net.base2[0], self.net.maxp2(a), left, right)

    def b(self, m3b: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
        return _mixed(self.net.base2[1], m3b, left, right)


@dataclass
class _Span:
    """Features (C, T, ...) at consecutive positions [lo, lo + T) of one sequence."""

    lo: int = 0
    data: torch.Tensor | None = None

    @property
    def hi(self) -> int:
        return self.lo + (0 if self.data is None else int(self.data.shape[1]))

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The ranges to compute so that the span covers [lo, hi) and stays contiguous."""
        if self.data is None:
            return [(lo, hi)]
        ranges = []
        if lo < self.lo:
            ranges.append((lo, self.lo))
        if hi > self.hi:
            ranges.append((self.hi, hi))
        return ranges

    def put(self, lo: int, data: torch.Tensor) -> None:
        if self.data is None:
            self.lo, self.data = lo, data
        elif lo + data.shape[1] == self.lo:
            self.lo, self.data = lo, torch.cat([data, self.data], 1)
        else:
            assert lo == self.hi, "long features must grow contiguously"
            self.data = torch.cat([self.data, data], 1)

    def take(self, lo: int, hi: int) -> torch.Tensor:
        assert self.data is not None and self.lo <= lo and hi <= self.hi, (lo, hi, self.lo, self.hi)
        return self.data[:, lo - self.lo : hi - self.lo]

    def keep(self, lo: int, hi: int) -> None:
        """Drop positions outside [lo, hi)."""
        if self.data is None:
            return
        lo, hi = max(lo, self.lo), min(hi, self.hi)
        if lo >= hi:
            self.data = None
        elif lo > self.lo or hi < self.hi:
            # a copy, so that the dropped positions' memory is freed
            self.data, self.lo = self.data[:, lo - self.lo : hi - self.lo].clone(), lo

    def nbytes(self) -> int:
        return 0 if self.data is None else self.data.numel() * self.data.element_size()


@dataclass
class SequenceCache:
    """Shared features of one sequence of a stream: conv1's spatial output per frame, then per phase
    every cut of :class:`Stages` at long positions (each computed once, none recomputed).

    ``frames(lo, hi)`` gives the normalised frames (3, hi - lo, H, W) at sequence indices
    [lo, hi); ``direction`` is where the windows go next (+1: later starts, -1: earlier),
    which is where :data:`LOOKAHEAD` computes ahead.
    """

    direction: int
    s1: _Span = field(default_factory=_Span)
    levels: dict[str, tuple[_Span, _Span]] = field(
        default_factory=lambda: {name: (_Span(), _Span()) for name in LEVELS}
    )

    def _ensure_s1(self, stages: Stages, frames: Callable[[int, int], torch.Tensor], lo: int, hi: int) -> None:
        for start, stop in self.s1.missing(lo, hi):
            self.s1.put(start, stages.s1(frames(start, stop)))

    def _ensure(
        self, stages: Stages, frames: Callable[[int, int], torch.Tensor], level: int, phase: int, lo: int, hi: int
    ) -> None:
        """Long features of LEVELS[level] at [lo, hi), from the level below (one temporal kernel's reach)."""
        span = self.levels[LEVELS[level]][phase]
        for k0, k1 in span.missing(lo, hi):
            if level == 0:  # u: conv1 at k0..k1-1 reads frames centre-3..centre+3, centre = phase + 2k
                f0, f1 = phase + 2 * k0 - 3, phase + 2 * k1 + 2
                self._ensure_s1(stages, frames, f0, f1)
                below = self.s1.take(f0, f1)
            else:
                self._ensure(stages, frames, level - 1, phase, k0 - 1, k1 + 1)
                below = self.levels[LEVELS[level - 1]][phase].take(k0 - 1, k1 + 1)
            step = getattr(stages, LEVELS[level])
            span.put(k0, step(below[None], False, False)[0])

    def prepare(
        self, stages: Stages, frames: Callable[[int, int], torch.Tensor], starts: list[int], bounds: tuple[int, int]
    ) -> None:
        """Compute what the windows starting at ``starts`` share; ``bounds``: the sequence indices with frames now."""
        for phase in (0, 1):
            ms = [(s - phase) // 2 for s in starts if s % 2 == phase]
            if not ms:
                continue
            lo, hi = min(ms) + B_EDGES[0], max(ms) + POSITIONS - B_EDGES[1]
            span = self.levels["b"][phase]
            # b[k] needs frames phase+2k-9 .. phase+2k+9; extend ahead only when the span falls short
            if self.direction > 0 and (span.data is None or hi > span.hi):
                hi = max(hi, min(hi + LOOKAHEAD, (bounds[1] - 8 - phase) // 2))
            elif self.direction < 0 and (span.data is None or lo < span.lo):
                lo = min(lo, max(lo - LOOKAHEAD, -((phase - 9 - bounds[0]) // 2)))
            self._ensure(stages, frames, len(LEVELS) - 1, phase, lo, hi)
            for s in starts:
                if s % 2 == phase:
                    self._ensure_s1(stages, frames, s, s + WINDOW)

    def keep(self, lo: int, hi: int) -> None:
        """Keep only what windows starting in [lo, hi] need."""
        self.s1.keep(lo, hi + WINDOW)
        for phase in (0, 1):
            m0, m1 = (lo - phase) // 2, (hi - phase) // 2 + 1
            for level, name in enumerate(LEVELS):  # b's window needs m+5..m+11, each level below one more
                reach = len(LEVELS) - 1 - level
                self.levels[name][phase].keep(m0 + B_EDGES[0] - reach, m1 + POSITIONS - B_EDGES[1] + reach)

    def nbytes(self) -> int:
        return self.s1.nbytes() + sum(span.nbytes() for pair in self.levels.values() for span in pair)


def assemble(stages: Stages, windows: list[tuple[SequenceCache, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` of windows (cache, start) whose shared features are prepared.

    Only padding-touched positions are computed here, each level from the one below: its
    own edge positions plus the shared positions next to them; batched across windows.
    """

    def shared(level: str, lo: int, hi: int) -> torch.Tensor:  # window-relative positions [lo, hi)
        rows = []
        for cache, s in windows:
            phase, m = s % 2, (s - s % 2) // 2
            rows.append(cache.levels[level][phase].take(m + lo, m + hi))
        return torch.stack(rows)

    s1 = [cache.s1.take(s, s + WINDOW) for cache, s in windows]
    u_left = stages.u(torch.stack([x[:, :6] for x in s1]), True, False)  # conv1 at q 0, 1: frames 0..5
    u_right = stages.u(torch.stack([x[:, WINDOW - 5 :] for x in s1]), False, True)  # q 15: frames 27..31
    a_left = stages.a(torch.cat([u_left, shared("u", 2, 4).to(u_left.dtype)], 2), True, False)  # q 0..2
    a_right = stages.a(torch.cat([shared("u", 13, 15).to(u_right.dtype), u_right], 2), False, True)  # q 14, 15
    a = torch.cat([a_left, shared("a", A_EDGES[0], POSITIONS - A_EDGES[1]).to(a_left.dtype), a_right], 2)
    m_left = stages.m3b(a[:, :, :5], True, False)  # q 0..3
    m_right = stages.m3b(a[:, :, 12:], False, True)  # q 13..15
    b_left = stages.b(torch.cat([m_left, shared("m3b", 4, 6).to(m_left.dtype)], 2), True, False)  # q 0..4
    b_right = stages.b(torch.cat([shared("m3b", 11, 13).to(m_right.dtype), m_right], 2), False, True)  # q 12..15
    b = torch.cat([b_left, shared("b", B_EDGES[0], POSITIONS - B_EDGES[1]).to(b_left.dtype), b_right], 2)
    return a, b

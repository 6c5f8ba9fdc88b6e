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

import torch
import torch.nn.functional as F

from tased_batch.model import WINDOW

# Positions per phase computed ahead of the windows asking: every extension of a long
# feature recomputes a halo of a few positions, so extending by more than one batch's
# needs at a time keeps that waste small (at 224x384 a position of a and b is 6.7 MB).
LOOKAHEAD = 8
HEAD = 2 * WINDOW - 2  # frames of the reversed head sequence (frame i < 31 uses frames i+31..i)
A_EDGES = (3, 2)  # positions of a = base1(x) that touch the window's padding, left and right
B_EDGES = (5, 4)  # the same for b = base2(maxp2(a))
POSITIONS = WINDOW // 2


def _tconv(conv: torch.nn.Conv3d, x: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
    """A temporal conv with its zero padding only on the sides asked (none: the long, valid form)."""
    p = int(conv.padding[0])  # type: ignore[index]
    x = F.pad(x, (0, 0, 0, 0, p if left else 0, p if right else 0))
    return F.conv3d(x, conv.weight, conv.bias, conv.stride, (0, *conv.padding[1:]))  # type: ignore[misc]


def _sep(m: torch.nn.Module, x: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
    x = m.relu_s(m.bn_s(m.conv_s(x)))
    return m.relu_t(m.bn_t(_tconv(m.conv_t, x, left, right)))


def _mixed(m: torch.nn.Module, x: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
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
    """The first two stages of a TASED-Net, split so that any temporal padding can be left out."""

    def __init__(self, net: torch.nn.Module, memory_format: torch.memory_format) -> None:
        self.net = net
        self.format = memory_format

    def s1(self, frames: torch.Tensor) -> torch.Tensor:
        """conv1's spatial half, per frame: (3, T, H, W) -> (64, T, H/2, W/2); it mixes no time."""
        conv = self.net.base1[0]
        x = frames[None].contiguous(memory_format=self.format)
        return conv.relu_s(conv.bn_s(conv.conv_s(x)))[0]

    def a(self, s1: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
        """base1 from conv1's spatial output (B, 64, T, ...): T frames -> (T - 5 + 3 padded sides) / 2 positions."""
        base1 = self.net.base1
        conv = base1[0]
        x = conv.relu_t(conv.bn_t(_tconv(conv.conv_t, s1, left, right)))
        return _sep(base1[3], base1[2](base1[1](x)), left, right)

    def b(self, a: torch.Tensor, left: bool, right: bool) -> torch.Tensor:
        """base2(maxp2(a)): T positions -> T - 4 + 2 per padded side."""
        y = self.net.maxp2(a)
        for block in self.net.base2:
            y = _mixed(block, y, left, right)
        return y


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
    """Shared features of one sequence of a stream: conv1's spatial output per frame, a and b per phase.

    ``frames(lo, hi)`` gives the normalised frames (3, hi - lo, H, W) at sequence indices
    [lo, hi); ``direction`` is where the windows go next (+1: later starts, -1: earlier),
    which is where :data:`LOOKAHEAD` computes ahead.
    """

    direction: int
    s1: _Span = field(default_factory=_Span)
    a: tuple[_Span, _Span] = field(default_factory=lambda: (_Span(), _Span()))
    b: tuple[_Span, _Span] = field(default_factory=lambda: (_Span(), _Span()))

    def _ensure_s1(self, stages: Stages, frames: Callable[[int, int], torch.Tensor], lo: int, hi: int) -> None:
        for start, stop in self.s1.missing(lo, hi):
            self.s1.put(start, stages.s1(frames(start, stop)))

    def _ensure_a(self, stages: Stages, frames: Callable[[int, int], torch.Tensor], phase: int, lo: int, hi: int) -> None:
        span = self.a[phase]
        for k0, k1 in span.missing(lo, hi):
            f0, f1 = phase + 2 * k0 - 5, phase + 2 * k1 + 4  # conv1 at k0-1..k1 (valid), each 7 frames
            self._ensure_s1(stages, frames, f0, f1)
            span.put(k0, stages.a(self.s1.take(f0, f1)[None], False, False)[0])

    def _ensure_b(self, stages: Stages, frames: Callable[[int, int], torch.Tensor], phase: int, lo: int, hi: int) -> None:
        span = self.b[phase]
        for k0, k1 in span.missing(lo, hi):
            self._ensure_a(stages, frames, phase, k0 - 2, k1 + 2)  # two Mixed blocks, radius 1 each
            span.put(k0, stages.b(self.a[phase].take(k0 - 2, k1 + 2)[None], False, False)[0])

    def prepare(
        self, stages: Stages, frames: Callable[[int, int], torch.Tensor], starts: list[int], bounds: tuple[int, int]
    ) -> None:
        """Compute what the windows starting at ``starts`` share; ``bounds``: the sequence indices with frames now."""
        for phase in (0, 1):
            ms = [(s - phase) // 2 for s in starts if s % 2 == phase]
            if not ms:
                continue
            lo, hi = min(ms) + B_EDGES[0], max(ms) + POSITIONS - B_EDGES[1]
            if self.direction > 0:  # b[k] needs frames phase+2k-9 .. phase+2k+9
                hi = max(hi, min(hi + LOOKAHEAD, (bounds[1] - 8 - phase) // 2))
            else:
                lo = min(lo, max(lo - LOOKAHEAD, -((phase - 9 - bounds[0]) // 2)))
            self._ensure_b(stages, frames, phase, lo, hi)
            # the windows' a at their shared positions, which b's halo may not have covered
            self._ensure_a(stages, frames, phase, min(ms) + A_EDGES[0], max(ms) + POSITIONS - A_EDGES[1])
            for s in starts:
                if s % 2 == phase:
                    self._ensure_s1(stages, frames, s, s + WINDOW)

    def keep(self, lo: int, hi: int) -> None:
        """Keep only what windows starting in [lo, hi) need."""
        self.s1.keep(lo, hi + WINDOW)
        for phase in (0, 1):
            m0, m1 = (lo - phase) // 2, (hi - phase) // 2 + 1
            self.a[phase].keep(m0 + A_EDGES[0] - 2, m1 + POSITIONS + 2)
            self.b[phase].keep(m0 + B_EDGES[0], m1 + POSITIONS)

    def nbytes(self) -> int:
        return self.s1.nbytes() + sum(span.nbytes() for span in (*self.a, *self.b))


def assemble(stages: Stages, windows: list[tuple[SequenceCache, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` of windows (cache, start) whose shared features are prepared: edges batched across windows."""
    s1 = [cache.s1.take(s, s + WINDOW) for cache, s in windows]
    left = torch.stack([x[:, :10] for x in s1])  # a at q 0..2: conv1 at q 0..3, frames 0..9
    right = torch.stack([x[:, WINDOW - 9 :] for x in s1])  # a at q 14..15: conv1 at q 13..15, frames 23..31
    a_left, a_right = stages.a(left, True, False), stages.a(right, False, True)
    middle = []
    for cache, s in windows:
        phase, m = s % 2, (s - s % 2) // 2
        middle.append(cache.a[phase].take(m + A_EDGES[0], m + POSITIONS - A_EDGES[1]))
    a = torch.cat([a_left, torch.stack(middle).to(a_left.dtype), a_right], 2)
    # b at q 0..4 from a at q 0..6, and at q 12..15 from a at q 10..15
    b_left = stages.b(a[:, :, : B_EDGES[0] + 2], True, False)
    b_right = stages.b(a[:, :, POSITIONS - B_EDGES[1] - 2 :], False, True)
    middle = []
    for cache, s in windows:
        phase, m = s % 2, (s - s % 2) // 2
        middle.append(cache.b[phase].take(m + B_EDGES[0], m + POSITIONS - B_EDGES[1]))
    b = torch.cat([b_left, torch.stack(middle).to(b_left.dtype), b_right], 2)
    return a, b

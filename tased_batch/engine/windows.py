"""Window arithmetic: which frames each target's 32-frame window holds, and model-size rules.

Windowing is the released script's: frame i >= 31 gets frames i-31..i; frame i < 31 gets
frames i+31, i+30, ..., i (the following frames, reversed in time, so i is still last).
A video shorter than 63 frames is looped (frame k stands for frame k mod N), which is what
the authors advise for short videos (TASED-Net issue #3) and equals their windowing
whenever the video is long enough. No torch here: planning and config use it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from tased_batch.core.sizes import parse_size as parse_size  # callers import it from the engine
from tased_batch.model import WINDOW

FIRST_WINDOWS = ("reversed", "released")  # how frames before the 32nd get a window (the option schema's choices)
REUSE_MODES = ("auto", "off")  # window reuse (engine/reuse.py): the option schema's choices
# auto reuses shared features for streams whose targets are at most this far apart (median
# gap): beyond it the long features cost more than the windows they spare
REUSE_MAX_GAP = 4


def reuse_pays(targets: Sequence[int] | None) -> bool:
    """Whether window reuse saves work for a stream with these targets (None: every frame)."""
    if targets is None:
        return True
    if len(targets) < 2:
        return False
    gaps = sorted(b - a for a, b in zip(targets, targets[1:]))
    return gaps[len(gaps) // 2] <= REUSE_MAX_GAP


def window_frames(i: int, n: int, first: str = "reversed") -> list[int]:
    """Frame indices of the window whose map is frame ``i``'s, for a video of ``n`` frames.

    For i < 31, ``first="reversed"`` gives the following frames reversed in time (i+31..i,
    the documented intent); ``"released"`` gives them in time order (i..i+31), which is what
    the released run_example.py feeds the model: its ``torch.flip(clip, [1])`` flips the
    colour channels of a (1, 3, 32, H, W) clip, not time (the engine flips the channels too).
    """
    if i >= WINDOW - 1:
        return list(range(i - WINDOW + 1, i + 1))
    if first == "released":
        return [(i + k) % n for k in range(WINDOW)]
    return [(i + WINDOW - 1 - k) % n for k in range(WINDOW)]


def window_start(i: int) -> int:
    """First frame a target's window may need (short videos loop back to frame 0)."""
    return i - WINDOW + 1 if i >= WINDOW - 1 else 0


def window_end(i: int) -> int:
    """Last frame a target's window needs when the video is long enough not to loop."""
    return i + WINDOW - 1 if i < WINDOW - 1 else i

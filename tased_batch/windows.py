"""Window arithmetic: which frames each target's 32-frame window holds, and model-size rules.

Windowing is the released script's: frame i >= 31 gets frames i-31..i; frame i < 31 gets
frames i+31, i+30, ..., i (the following frames, reversed in time, so i is still last).
A video shorter than 63 frames is looped (frame k stands for frame k mod N), which is what
the authors advise for short videos (TASED-Net issue #3) and equals their windowing
whenever the video is long enough. No torch here: planning and config use it too.
"""

from __future__ import annotations

WINDOW = 32  # frames per TASED-Net clip


def parse_size(text: str) -> tuple[int, int]:
    """``"224x384"`` -> (224, 384); both must be positive multiples of 32."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"size must look like HxW (e.g. 224x384), got {text!r}") from e
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"model size {h}x{w}: height and width must be positive multiples of 32")
    return h, w


FIRST_WINDOWS = ("reversed", "released")


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

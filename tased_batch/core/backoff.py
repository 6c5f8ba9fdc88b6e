"""Exponential backoff with jitter, for requeued shards and for storage retries.

Delays grow to minutes, not seconds: an object store's SlowDown burst or a throttled
endpoint lasts that long. Jitter spreads the retries of many actors, so they do not all
come back at once. The random source is injectable, so tests check the bounds without
sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Storage retries inside one video: ~10 s, 20 s, 40 s, 80 s, 160 s (each with jitter): up to ~5 minutes.
STORAGE_BASE = 10.0
STORAGE_CAP = 300.0
STORAGE_RETRIES = 5
# A shard whose attempt failed waits before it is handed out again: ~30 s, 60 s, 120 s ... up to 15 minutes.
SHARD_BASE = 30.0
SHARD_CAP = 900.0


def backoff_delay(attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): in [d/2, d], d = min(cap, base * 2**(attempt-1))."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * rng())

"""When a timer-driven cycle runs late: run it, run it and warn, or skip it.

A cycle's timer event carries the time it was due. If the event loop was busy, the
event arrives late; running every late event back to back would pile work up behind
the busy spell. The rule: late by more than one period, skip (a newer event is already
queued); late by more than half a period, run but report the lag.
"""

from __future__ import annotations

import enum

NS_PER_MS = 1_000_000


class CycleDecision(enum.Enum):
    RUN = "run"
    RUN_LAGGING = "run_lagging"
    SKIP = "skip"


def decide(due_ns: int, now_ns: int, period_ms: int) -> tuple[CycleDecision, int]:
    """The decision for a cycle due at ``due_ns`` seen at ``now_ns``, and its lag in ms."""
    lag_ms = max(0, (now_ns - due_ns) // NS_PER_MS)
    if lag_ms > period_ms:
        return CycleDecision.SKIP, lag_ms
    if lag_ms > period_ms // 2:
        return CycleDecision.RUN_LAGGING, lag_ms
    return CycleDecision.RUN, lag_ms

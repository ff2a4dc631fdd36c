"""When a timer-driven cycle fires: run it, run it and report the lag, or skip it.

Cycles are judged by the time since the cycle last ran, on the node's clock, not by the
timer event's own due time: after the process has been frozen or starved, NautilusTrader's
live timers keep firing at their period but a fixed delay behind, so every event would
look late forever. The rule: an event that comes less than half a period after the last
run is a queued duplicate (the loop was busy and the timer piled up events): skip it.
One that comes more than one and a half periods after the last run means the cycle was
held up: run it and report the lag (time beyond one period).
"""

from __future__ import annotations

import enum

NS_PER_MS = 1_000_000


class CycleDecision(enum.Enum):
    RUN = "run"
    RUN_LAGGING = "run_lagging"
    SKIP = "skip"


def decide(last_run_ns: int | None, now_ns: int, period_ms: int) -> tuple[CycleDecision, int]:
    """The decision for a cycle that last ran at ``last_run_ns``, seen at ``now_ns``; and its lag in ms."""
    if last_run_ns is None:
        return CycleDecision.RUN, 0
    since_ms = max(0, (now_ns - last_run_ns) // NS_PER_MS)
    if since_ms * 2 < period_ms:
        return CycleDecision.SKIP, 0
    lag_ms = max(0, since_ms - period_ms)
    if since_ms * 2 > period_ms * 3:
        return CycleDecision.RUN_LAGGING, lag_ms
    return CycleDecision.RUN, lag_ms

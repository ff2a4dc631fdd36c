"""Churn findings from counters: ownership changes and WebSocket resubscriptions per second.

Pure, like :mod:`ntplatform.diagnosis`: the sensors read each node's ``/metrics`` twice, a
minute apart, and hand the growth of ``nt_hrw_rebalances_total`` and
``nt_ws_resubscribe_total{reason}`` here. Thresholds are the alert rules' (SPEC section 9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ntplatform.diagnosis import RUNBOOK, Finding

GUIDE_REBALANCING = f"3. Excessive Rebalancing; {RUNBOOK}#excessive-rebalancing"
GUIDE_RECONNECT_LOOPS = f"7. WebSocket Reconnection Loops; {RUNBOOK}#websocket-resubscription-loops"

MAX_REBALANCE_RATE = 0.05  # per second per node: ExcessiveRebalancing
MAX_RESUBSCRIBE_RATE = 0.1  # per second per node: ExcessiveWebSocketResubscriptions
# Resubscriptions that are the platform's own doing, not a loop: rebalancing and commands.
EXPECTED_RESUBSCRIBE_REASONS = ("symbol_acquired", "control_command")


def counter_increase(previous: float | None, current: float) -> float:
    """How much a counter grew since ``previous``; a drop means the process restarted."""
    if previous is None:
        return 0.0
    return current - previous if current >= previous else current


def excessive_rebalancing(
    by_node: Mapping[str, float], seconds: float, restarted: Sequence[str]
) -> Finding | None:
    """Each node's ``nt_hrw_rebalances_total`` growth over ``seconds``, and the nodes that restarted."""
    rates = {node: (increase / seconds if seconds > 0 else 0.0) for node, increase in by_node.items()}
    if not rates or max(rates.values()) <= MAX_REBALANCE_RATE:
        return None
    cause = (
        f"node flapping: {', '.join(restarted)} restarted meanwhile"
        if restarted
        else "no node restarted: heartbeats expiring (network/Redis) or settings too aggressive"
    )
    shown = ", ".join(f"{node} {rate:.3f}/s" for node, rate in sorted(rates.items()))
    return Finding(
        kind="excessive_rebalancing",
        subject="fleet",
        detail=f"ownership changes over {seconds:.0f} s: {shown} "
        f"(limit {MAX_REBALANCE_RATE}/s per node); {cause}",
        remediation="find why the flapping node restarts (fatal_error, exit code) and stop it"
        if restarted
        else "check Redis latency and heartbeat TTLs; raise NT_REBALANCE_INTERVAL_SEC, "
        "NT_HRW_STICKY_PCT, NT_MIN_HOLD_MS",
        guide=GUIDE_REBALANCING,
        data={
            "rate_per_s": {n: round(r, 4) for n, r in rates.items()},
            "seconds": seconds,
            "restarted": list(restarted),
        },
    )


def resubscribe_loop(node: str, by_reason: Mapping[str, float], seconds: float) -> Finding | None:
    """A node's ``nt_ws_resubscribe_total`` growth by reason; expected reasons do not count."""
    looping = {r: v for r, v in by_reason.items() if r not in EXPECTED_RESUBSCRIBE_REASONS and v > 0}
    rate = sum(looping.values()) / seconds if seconds > 0 else 0.0
    if rate <= MAX_RESUBSCRIBE_RATE:
        return None
    reasons = ", ".join(f"{r}={v:g}" for r, v in sorted(looping.items()))
    return Finding(
        kind="ws_resubscribe_loop",
        subject=node,
        detail=f"{rate:.2f} resubscriptions/s over {seconds:.0f} s "
        f"(limit {MAX_RESUBSCRIBE_RATE}/s): {reasons}",
        remediation="reconnect: check the exchange's status and the network path; resync: look for "
        "book_resync reasons (sequence_gap = lost messages) and 429s (book_snapshot_failed)",
        guide=GUIDE_RECONNECT_LOOPS,
        node=node,
        data={"rate_per_s": round(rate, 4), "by_reason": dict(by_reason), "seconds": seconds},
    )

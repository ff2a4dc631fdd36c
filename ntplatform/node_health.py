"""Reading a producer node's ``/health`` document (producer/health.py writes it; no I/O).

Dagster's diagnosis uses these to say *why* a node is degraded in the troubleshooting
guide's terms, and whether a symbol's book waits on a rate-limited snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def followed(body: Mapping[str, Any] | None, symbol: str) -> Mapping[str, Any]:
    """The symbol's entry in ``symbols`` (empty when the node does not follow it or is unreachable)."""
    return ((body or {}).get("symbols") or {}).get(symbol) or {}


def rate_limited(body: Mapping[str, Any] | None, symbol: str, now_ms: int) -> str | None:
    """How the symbol's book snapshots are rate-limited ("2 failed in a row, next in 20 s"), or None."""
    entry = followed(body, symbol)
    if not entry.get("rate_limited"):
        return None
    retry_ms = entry.get("snapshot_retry_ms")
    # The node's wall clock against ``now_ms`` (Redis's): close enough to say roughly when.
    due = "" if retry_ms is None else f", next in {max(0, int(retry_ms) - now_ms) // 1000} s"
    return f"{entry.get('snapshot_failures', 0)} failed in a row{due}"


def troubles(body: Mapping[str, Any], now_ms: int) -> list[str]:
    """What makes the node not ``ok``, one phrase each, in the order an operator checks them."""
    found = []
    if not (body.get("redis") or {}).get("connected", True):
        found.append("Redis unreachable from the node")
    coordination = body.get("coordination") or {}
    if coordination.get("duplicate_node_id"):
        found.append("another process uses its node id")
    if coordination.get("mismatched_nodes"):
        found.append(f"coordination settings differ from {', '.join(coordination['mismatched_nodes'])}")
    if body.get("unavailable_symbols"):
        found.append(f"not listed by the exchange: {', '.join(body['unavailable_symbols'])}")
    for symbol in coordination.get("owned_symbols") or []:
        entry = followed(body, symbol)
        limited = rate_limited(body, symbol, now_ms)
        if limited is not None:
            found.append(f"{symbol} book waits on rate-limited snapshots ({limited})")
        elif entry and not entry.get("book_synced", True):
            found.append(f"{symbol} book not synced")
        elif entry.get("stale"):
            found.append(f"{symbol} market data older than 5 s")
    return found


def only_rate_limited(body: Mapping[str, Any], now_ms: int) -> bool:
    """Whether every trouble is a rate-limited snapshot: nothing a restart would fix."""
    found = troubles(body, now_ms)
    return bool(found) and all("rate-limited" in trouble for trouble in found)

"""Live state of one node, shared by the actor, the publisher and the HTTP server.

Writers update plain attributes under a lock; ``snapshot()`` returns the ``/health``
document (SPEC section 7).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ntplatform.tracker import STALE_AFTER_MS

# A symbol this node owns but has not published for this long makes it "degraded".
STALE_PUBLISH_S = 5.0


@dataclass
class SymbolState:
    book_synced: bool = False
    data_age_ms: int | None = None
    last_publish_ms: int | None = None  # wall clock, for people
    last_publish_monotonic: float | None = None  # for comparisons, immune to clock changes
    # Failed book-snapshot requests in a row since the book was last synced, whether the last
    # one was refused by the exchange's rate limit, and when (wall ms) the next is due.
    snapshot_failures: int = 0
    rate_limited: bool = False
    snapshot_retry_ms: int | None = None


class NodeState:
    """What the node knows about itself right now."""

    def __init__(self, node_id: str, multi_instance: bool) -> None:
        self.node_id = node_id
        self.multi_instance = multi_instance
        self.started_monotonic = time.monotonic()
        self.redis_connected = False
        self.running = False
        self.owned_symbols: list[str] = []
        self.live_nodes: list[str] = [node_id]
        self.unavailable_symbols: list[str] = []  # configured but not listed by the exchange
        self.mismatched_nodes: list[str] = []  # peers with different coordination settings
        self.duplicate_node_id = False  # another live process heartbeats under this node's id
        self.symbols: dict[str, SymbolState] = {}  # the symbols this node follows now
        self._lock = threading.Lock()

    def update_symbol(self, symbol: str, **fields: Any) -> None:
        with self._lock:
            state = self.symbols.setdefault(symbol, SymbolState())
            for name, value in fields.items():
                setattr(state, name, value)

    def forget_symbol(self, symbol: str) -> None:
        with self._lock:
            self.symbols.pop(symbol, None)

    def set_owned(self, symbols: list[str]) -> None:
        with self._lock:
            self.owned_symbols = sorted(symbols)

    def status(self) -> str:
        """``starting`` until every owned symbol has published once; ``degraded`` on trouble."""
        if not self.running:
            return "starting"
        trouble = self.unavailable_symbols or self.mismatched_nodes or self.duplicate_node_id
        if not self.redis_connected or trouble:
            return "degraded"
        now = time.monotonic()
        for symbol in self.owned_symbols:
            state = self.symbols.get(symbol)
            if state is None or state.last_publish_monotonic is None:
                return "starting" if self.uptime_s() < 60 else "degraded"
            if not state.book_synced or now - state.last_publish_monotonic > STALE_PUBLISH_S:
                return "degraded"
            if state.data_age_ms is not None and state.data_age_ms > STALE_AFTER_MS:
                return "degraded"
        return "ok"

    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_monotonic, 3)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            symbols = {
                name: {
                    "book_synced": s.book_synced,
                    "data_age_ms": s.data_age_ms,
                    "last_publish_ms": s.last_publish_ms,
                    "stale": s.data_age_ms is not None and s.data_age_ms > STALE_AFTER_MS,
                    "snapshot_failures": s.snapshot_failures,
                    "rate_limited": s.rate_limited,
                    "snapshot_retry_ms": s.snapshot_retry_ms,
                }
                for name, s in sorted(self.symbols.items())
            }
            owned = list(self.owned_symbols)
            live = list(self.live_nodes)
        return {
            "status": self.status(),
            "node_id": self.node_id,
            "uptime_s": self.uptime_s(),
            "redis": {"connected": self.redis_connected},
            "coordination": {
                "owned_symbols": owned,
                "live_nodes": live,
                "multi_instance": self.multi_instance,
                "mismatched_nodes": list(self.mismatched_nodes),
                "duplicate_node_id": self.duplicate_node_id,
            },
            "symbols": symbols,
            "unavailable_symbols": list(self.unavailable_symbols),
        }

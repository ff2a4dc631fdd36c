"""Per-symbol analytics state and report building. Pure: no I/O, no NautilusTrader.

The producer's actor feeds a ``SymbolTracker`` with book changes and trades (already
converted to floats) and asks it for the fast report each cycle and the slow summary
each slow cycle.

``data_age_ms`` is defined as: the time, on the node's own clock, between publishing
the report and *receiving* the newest market event (book change or trade) applied to
it. Both ends use the same clock, so it is never negative and does not move when the
exchange's clock and the node's differ (the recordings carry 1.3 s of such skew).
The exchange-side time of that event is reported separately as ``ts_event_ms``.
"""

from __future__ import annotations

from typing import Any

from ntplatform.analytics import MidSampler, TradeWindow, book_metrics
from ntplatform.book import L2Book

SCHEMA_VERSION = 1
NS_PER_MS = 1_000_000
# Market data older than this is stale (the MarketDataCritical threshold); it counts as
# fresh again only below FRESH_BELOW_MS (MarketDataStale), so a flapping age logs once.
STALE_AFTER_MS = 5000
FRESH_BELOW_MS = 1000


class SymbolTracker:
    """Book, last trade and rolling windows of one symbol."""

    def __init__(self, symbol: str, book_depth: int, window_ms: int) -> None:
        self.symbol = symbol
        self.book_depth = book_depth
        self.book: L2Book[float] = L2Book()
        self.synced = False
        self.lost_sync_ns = 0  # node time the book was last known to lose sync
        self.last_event_ns: int | None = None  # exchange time of the newest applied event
        self.last_receive_ns: int | None = None  # node time when it was received
        self.last_trade: tuple[float, float, str | None] | None = None
        self.trades = TradeWindow(window_ms)
        self.mids = MidSampler(window_ms)
        self.window_min = window_ms // 60_000
        self.slow: dict[str, Any] | None = None
        self.stale = False

    # -- market data ------------------------------------------------------------------------

    def reset_book(self) -> None:
        """Empty the book ahead of a snapshot; nothing is reported until it is synced."""
        self.book.clear()
        self.synced = False

    def set_level(self, is_bid: bool, price: float, quantity: float) -> None:
        side = self.book.side(is_bid)
        if quantity > 0:
            side.set(price, quantity)
        else:
            side.remove(price)

    def book_applied(self, update_id: int, ts_event_ns: int, ts_receive_ns: int, *, snapshot: bool) -> None:
        """Close one exchange book event (or snapshot) with its update id and times.

        A snapshot syncs the book only if it was received after the book last lost sync:
        one still queued from before a loss brings the book no closer to the exchange.
        """
        self.book.update_id = update_id
        if snapshot and ts_receive_ns >= self.lost_sync_ns:
            self.synced = True
        self._touch(ts_event_ns, ts_receive_ns)

    def lose_sync(self, at_ns: int = 0) -> None:
        """The book stopped mirroring the exchange at node time ``at_ns``."""
        self.synced = False
        self.lost_sync_ns = max(self.lost_sync_ns, at_ns)

    def trade(
        self, price: float, quantity: float, aggressor: str | None, ts_event_ns: int, ts_receive_ns: int
    ) -> None:
        """Record a trade; ``aggressor`` is ``"buyer"``, ``"seller"`` or None."""
        self.last_trade = (price, quantity, aggressor)
        buyer = None if aggressor is None else aggressor == "buyer"
        # The window is placed on the node clock, like every expiry decision.
        self.trades.add(ts_receive_ns // NS_PER_MS, price, quantity, buyer)
        self._touch(ts_event_ns, ts_receive_ns)

    def _touch(self, ts_event_ns: int, ts_receive_ns: int) -> None:
        if self.last_event_ns is None or ts_event_ns > self.last_event_ns:
            self.last_event_ns = ts_event_ns
        if self.last_receive_ns is None or ts_receive_ns > self.last_receive_ns:
            self.last_receive_ns = ts_receive_ns

    def staleness_change(self, now_ns: int) -> str | None:
        """``"stale"`` or ``"recovered"`` when the data crosses a threshold, else None."""
        age = self.data_age_ms(now_ns)
        if age is None:
            return None
        if not self.stale and age > STALE_AFTER_MS:
            self.stale = True
            return "stale"
        if self.stale and age < FRESH_BELOW_MS:
            self.stale = False
            return "recovered"
        return None

    # -- reports ----------------------------------------------------------------------------

    def data_age_ms(self, now_ns: int) -> int | None:
        if self.last_receive_ns is None:
            return None
        return max(0, (now_ns - self.last_receive_ns) // NS_PER_MS)

    def fast_report(self, now_ns: int) -> dict[str, Any] | None:
        """The report for this cycle, or None when the book cannot be trusted."""
        if not self.synced or self.book.update_id is None or self.book.is_crossed():
            return None
        depth = self.book_depth
        metrics = book_metrics(self.book.bids.top(depth), self.book.asks.top(depth), depth)
        now_ms = now_ns // NS_PER_MS
        self.mids.record(now_ms, metrics["mid"])
        price, quantity, aggressor = self.last_trade or (None, None, None)
        return {
            "schema_version": SCHEMA_VERSION,
            "symbol": self.symbol,
            "ts_event_ms": None if self.last_event_ns is None else self.last_event_ns // NS_PER_MS,
            "ts_published_ms": now_ms,
            "data_age_ms": self.data_age_ms(now_ns),
            "book_update_id": self.book.update_id,
            **metrics,
            "last_trade_price": price,
            "last_trade_qty": quantity,
            "last_trade_aggressor": aggressor,
            "slow": self.slow,
        }

    def slow_cycle(self, now_ns: int) -> dict[str, Any]:
        """Recompute the slow analytics (volume profile, VWAP, volatility) and keep them."""
        now_ms = now_ns // NS_PER_MS
        self.trades.expire(now_ms)
        self.slow = {
            "ts_ms": now_ms,
            "window_min": self.window_min,
            **self.trades.summary(now_ms),
            "realized_vol": self.mids.realized_vol(now_ms),
        }
        return self.slow

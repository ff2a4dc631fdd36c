"""Top-of-book and depth metrics computed from the best levels of an order book.

Plain data in, plain data out: each side is a sequence of ``(price, quantity)``
pairs, best level first. The producer calls :func:`book_metrics` for every symbol
on every fast cycle, so it makes one pass over at most ``depth`` levels per side and
builds nothing but the result.
"""

from __future__ import annotations

from collections.abc import Sequence

BOOK_METRIC_KEYS: tuple[str, ...] = (
    "best_bid",
    "best_ask",
    "best_bid_qty",
    "best_ask_qty",
    "mid",
    "spread",
    "spread_bps",
    "microprice",
    "imbalance_1",
    "imbalance_5",
    "imbalance_20",
    "bid_depth",
    "ask_depth",
)
"""The keys of the mapping :func:`book_metrics` returns, in report order."""

Level = tuple[float, float]


def _side_sums(levels: Sequence[Level], count: int) -> tuple[float, float, float, float]:
    """Quantity summed over the top 1, 5, 20 and ``count`` levels of one side.

    Each partial sum stops early when the side has fewer levels than asked for.
    """
    top_1 = top_5 = top_20 = total = 0.0
    for index in range(count):
        total += levels[index][1]
        if index == 0:
            top_1 = total
        if index < 5:
            top_5 = total
        if index < 20:
            top_20 = total
    return top_1, top_5, top_20, total


def _imbalance(bid_quantity: float, ask_quantity: float) -> float | None:
    """``(bid - ask) / (bid + ask)``, or None when both quantities are zero."""
    both = bid_quantity + ask_quantity
    if both <= 0.0:
        return None
    return (bid_quantity - ask_quantity) / both


def _microprice(best_bid: float, best_ask: float, bid_quantity: float, ask_quantity: float) -> float | None:
    """Best prices weighted by the opposite side's size, or None with no size at all."""
    both = bid_quantity + ask_quantity
    if both <= 0.0:
        return None
    # Same value as (bid * ask_qty + ask * bid_qty) / both, written as a weight in
    # [0, 1] so that tiny quantities cannot underflow it out of the spread.
    return best_bid + (best_ask - best_bid) * (bid_quantity / both)


def book_metrics(bids: Sequence[Level], asks: Sequence[Level], depth: int) -> dict[str, float | None]:
    """Compute the report's book fields from the best ``depth`` levels of each side.

    ``bids`` are ordered by descending price and ``asks`` by ascending price, best
    first; levels past ``depth`` are ignored. The result has exactly the keys in
    :data:`BOOK_METRIC_KEYS`:

    - ``mid = (best_bid + best_ask) / 2`` and ``spread = best_ask - best_bid``;
      ``spread_bps = spread / mid * 10_000``.
    - ``microprice = (best_bid * best_ask_qty + best_ask * best_bid_qty)
      / (best_bid_qty + best_ask_qty)``: it leans toward the side with less size.
    - ``imbalance_N = (bid qty - ask qty) / (bid qty + ask qty)`` over the top
      ``min(N, depth)`` levels of each side, in [-1, 1].
    - ``bid_depth`` / ``ask_depth``: total quantity in the top ``depth`` levels.

    Nothing is ever NaN and nothing raises. A value that needs a missing side is
    None: an empty side gives None for its best price and quantity, and for
    ``mid``, ``spread``, ``spread_bps`` and ``microprice``; its depth is 0.0. The
    imbalances still follow the formula, so a book with bids only has imbalance
    1.0 and one with asks only -1.0; they are None only when both sides hold zero
    quantity. ``spread_bps`` is None when the mid is not positive.
    """
    bid_count = min(len(bids), depth) if depth > 0 else 0
    ask_count = min(len(asks), depth) if depth > 0 else 0
    bid_1, bid_5, bid_20, bid_depth = _side_sums(bids, bid_count)
    ask_1, ask_5, ask_20, ask_depth = _side_sums(asks, ask_count)

    best_bid: float | None = None
    best_bid_qty: float | None = None
    best_ask: float | None = None
    best_ask_qty: float | None = None
    if bid_count:
        best_bid, best_bid_qty = bids[0]
    if ask_count:
        best_ask, best_ask_qty = asks[0]

    mid: float | None = None
    spread: float | None = None
    spread_bps: float | None = None
    microprice: float | None = None
    if best_bid is not None and best_ask is not None:
        mid = (best_bid + best_ask) / 2.0
        spread = best_ask - best_bid
        spread_bps = spread / mid * 10_000.0 if mid > 0.0 else None
        microprice = _microprice(best_bid, best_ask, bid_1, ask_1)

    return {
        "best_bid": best_bid,
        "best_ask": best_ask,
        "best_bid_qty": best_bid_qty,
        "best_ask_qty": best_ask_qty,
        "mid": mid,
        "spread": spread,
        "spread_bps": spread_bps,
        "microprice": microprice,
        "imbalance_1": _imbalance(bid_1, ask_1),
        "imbalance_5": _imbalance(bid_5, ask_5),
        "imbalance_20": _imbalance(bid_20, ask_20),
        "bid_depth": bid_depth,
        "ask_depth": ask_depth,
    }

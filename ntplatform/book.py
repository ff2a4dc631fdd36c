"""A price-level (L2) order book kept from snapshots and diff updates.

Pure data structure, no I/O: the producer keeps one per symbol from NautilusTrader's
deltas, and the replay exchange keeps one per symbol to answer depth snapshots.
Levels are keyed by price as a float; each level carries an arbitrary value (the
producer stores the quantity as a float, the replay exchange the exchange's strings).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class BookSide(Generic[V]):
    """One side of the book. Bids are best at the highest price, asks at the lowest."""

    def __init__(self, *, descending: bool) -> None:
        self._descending = descending
        self._sort_keys: list[float] = []  # ascending; bids stored negated
        self._levels: dict[float, V] = {}

    def __len__(self) -> int:
        return len(self._levels)

    def _sort_key(self, price: float) -> float:
        return -price if self._descending else price

    def set(self, price: float, value: V) -> None:
        """Insert or replace the level at ``price``."""
        if price not in self._levels:
            insort(self._sort_keys, self._sort_key(price))
        self._levels[price] = value

    def remove(self, price: float) -> bool:
        """Delete the level at ``price``; return whether it existed."""
        if self._levels.pop(price, None) is None:
            return False
        key = self._sort_key(price)
        index = bisect_left(self._sort_keys, key)
        del self._sort_keys[index]
        return True

    def clear(self) -> None:
        self._sort_keys.clear()
        self._levels.clear()

    def best(self) -> tuple[float, V] | None:
        if not self._sort_keys:
            return None
        price = self._price(self._sort_keys[0])
        return price, self._levels[price]

    def top(self, depth: int) -> list[tuple[float, V]]:
        """The best ``depth`` levels, best first."""
        return [(p, self._levels[p]) for p in map(self._price, self._sort_keys[:depth])]

    def __iter__(self) -> Iterator[tuple[float, V]]:
        for key in self._sort_keys:
            price = self._price(key)
            yield price, self._levels[price]

    def _price(self, key: float) -> float:
        return -key if self._descending else key


class L2Book(Generic[V]):
    """Both sides of a price-level book plus the exchange update id it reflects."""

    def __init__(self) -> None:
        self.bids: BookSide[V] = BookSide(descending=True)
        self.asks: BookSide[V] = BookSide(descending=False)
        self.update_id: int | None = None

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.update_id = None

    def side(self, is_bid: bool) -> BookSide[V]:
        return self.bids if is_bid else self.asks

    def is_crossed(self) -> bool:
        bid, ask = self.bids.best(), self.asks.best()
        return bid is not None and ask is not None and bid[0] >= ask[0]

"""A small Binance market-data client for tests: diff-depth sync by the documented rules.

It keeps its own reference book from a depth snapshot plus diff events, reports gaps
instead of hiding them, resyncs from a new snapshot after one, and checks its best bid
and ask against every recorded ``bookTicker`` whose update id it reaches (the oracle).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import orjson


class ReferenceBook:
    """A client's book kept by Binance's rules; reports gaps instead of hiding them."""

    def __init__(self, snapshot: dict[str, Any], futures: bool) -> None:
        self.futures = futures
        self.last_update_id = snapshot["lastUpdateId"]
        self.update_id: int | None = None  # None until the first event is applied
        self.bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}

    def apply(self, event: dict[str, Any]) -> str:
        """Apply one diff event: 'applied', 'old' (covered by the snapshot) or 'gap'."""
        first, final = event["U"], event["u"]
        if self.update_id is None:
            if final < self.last_update_id or (final == self.last_update_id and not self.futures):
                return "old"
            anchor = self.last_update_id if self.futures else self.last_update_id + 1
            if not first <= anchor <= final:
                return "gap"
        elif event["pu"] != self.update_id if self.futures else first != self.update_id + 1:
            return "gap"
        for side, levels in ((self.bids, event["b"]), (self.asks, event["a"])):
            for price, quantity in levels:
                if Decimal(quantity) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(quantity)
        self.update_id = final
        return "applied"

    def top(self) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
        bid, ask = max(self.bids), min(self.asks)
        return (bid, self.bids[bid]), (ask, self.asks[ask])


@dataclass
class FollowResult:
    """What a book-following client observed."""

    matches: int = 0
    mismatches: list[str] = field(default_factory=list)
    gaps: int = 0
    syncs: int = 0
    matches_after_resync: int = 0
    depth_event_times: list[int] = field(default_factory=list)
    snapshot_ids: list[int] = field(default_factory=list)


class BookFollower:
    """A market-data client: buffers diff events, syncs from a snapshot, resyncs on gaps."""

    def __init__(self, base: str, symbol: str, futures: bool) -> None:
        self.base, self.symbol, self.futures = base, symbol, futures
        self.result = FollowResult()
        self.book: ReferenceBook | None = None
        self.buffer: list[dict[str, Any]] = []
        self.tickers: dict[int, dict[str, Any]] = {}
        self.snapshot_task: asyncio.Task[dict[str, Any]] | None = None

    async def follow(self, seconds: float) -> FollowResult:
        """Follow the book for ``seconds``; return what was observed."""
        lower = self.symbol.lower()
        depth_stream = f"{lower}@depth@0ms" if self.futures else f"{lower}@depth@100ms"
        url = self.base.replace("http", "ws") + f"/stream?streams={depth_stream}/{lower}@bookTicker"
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            self.snapshot_task = asyncio.create_task(self._fetch_snapshot(http))
            deadline = loop.time() + seconds
            while loop.time() < deadline:
                envelope = orjson.loads((await ws.receive(timeout=5)).data)
                if envelope["stream"].endswith("@bookTicker"):
                    self._on_ticker(envelope["data"])
                else:
                    self._on_depth(envelope["data"], http)
            self.snapshot_task.cancel()
        return self.result

    async def _fetch_snapshot(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        path = "/fapi/v1/depth" if self.futures else "/api/v3/depth"
        async with http.get(f"{self.base}{path}?symbol={self.symbol}&limit=1000") as response:
            return await response.json()

    def _on_ticker(self, ticker: dict[str, Any]) -> None:
        self.tickers[ticker["u"]] = ticker
        if self.book is not None and self.book.update_id == ticker["u"]:
            self._check(self.tickers.pop(ticker["u"]))
        if len(self.tickers) > 1000:
            self.tickers = dict(list(self.tickers.items())[-100:])

    def _on_depth(self, event: dict[str, Any], http: aiohttp.ClientSession) -> None:
        self.result.depth_event_times.append(event["E"])
        if self.book is None:
            self.buffer.append(event)
        elif not self._apply(event):
            self._resync(http, [event])
        if self.book is None and self.snapshot_task is not None and self.snapshot_task.done():
            snapshot = self.snapshot_task.result()
            self.result.snapshot_ids.append(snapshot["lastUpdateId"])
            self.result.syncs += 1
            self.book = ReferenceBook(snapshot, self.futures)
            pending, self.buffer = self.buffer, []
            if not all(self._apply(buffered) for buffered in pending):
                self._resync(http, [])

    def _resync(self, http: aiohttp.ClientSession, buffer: list[dict[str, Any]]) -> None:
        self.book, self.buffer = None, buffer
        self.snapshot_task = asyncio.create_task(self._fetch_snapshot(http))

    def _apply(self, event: dict[str, Any]) -> bool:
        assert self.book is not None
        outcome = self.book.apply(event)
        if outcome == "gap":
            self.result.gaps += 1
            return False
        if outcome == "applied" and event["u"] in self.tickers:
            self._check(self.tickers.pop(event["u"]))
        return True

    def _check(self, ticker: dict[str, Any]) -> None:
        assert self.book is not None
        (bid, bid_qty), (ask, ask_qty) = self.book.top()
        expected = tuple(Decimal(ticker[key]) for key in ("b", "B", "a", "A"))
        if (bid, bid_qty, ask, ask_qty) == expected:
            self.result.matches += 1
            self.result.matches_after_resync += self.result.syncs > 1
        else:
            self.result.mismatches.append(f"u={ticker['u']} book {bid}/{ask} ticker {expected}")


async def follow_book(base: str, symbol: str, futures: bool, seconds: float) -> FollowResult:
    """Connect, sync a reference book, resync after gaps, check it at every bookTicker."""
    return await BookFollower(base, symbol, futures).follow(seconds)

"""Replay state of one symbol: its timeline position, its order book and its epochs.

Pure logic, no I/O and no clock of its own: callers pass the current wall time in
nanoseconds. A message recorded at receive time ``r`` is released at
``epoch_start + (r - r_first) / speed``, where ``r_first`` is the receive time of the
recording's snapshot; its event times (``E``, ``T``) are re-stamped by the same mapping,
so the recordings' own offset between exchange and receive clocks is kept.

When the timeline ends the replay loops: the next epoch starts again from the snapshot,
with every update id and trade id shifted up by a fixed step per epoch. The step
leaves a gap at the boundary, exactly as a real stream gap looks to a client checking
sequence numbers; the client resyncs from a new snapshot, which this state answers
from the new epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ntplatform.book import BookSide, L2Book
from ntplatform.replay.recording import (
    AGG_TRADE,
    BOOK_TICKER,
    DEPTH,
    TRADE,
    USDM,
    Recording,
)

# Recording time between an epoch's last message and the next epoch's snapshot: one
# diff-depth interval, so the first event of the new epoch does not share a release
# tick (and an event time) with the last one of the old epoch.
EPOCH_PAUSE_NS = 100_000_000
# Ids skipped at each epoch boundary, on top of the id span of one epoch.
ID_GAP = 1_000

Level = list[str]  # the exchange's [price, quantity] strings, echoed unchanged


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message released by the replay: its channel and its re-stamped payload."""

    channel: str
    data: dict[str, Any]


class SymbolReplay:
    """Replays one recording under one symbol name, looping forever.

    ``symbol`` defaults to the recorded one; another name serves the same recording
    as an alias (payloads then carry the alias in ``s``).
    """

    def __init__(
        self,
        recording: Recording,
        *,
        start_ns: int,
        speed: float = 1.0,
        symbol: str | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, was {speed}")
        self.recording = recording
        self.symbol = symbol or recording.symbol
        self.market = recording.market
        self.speed = speed
        self.book: L2Book[Level] = L2Book()
        self._start_ns = start_ns
        self._first_ns = recording.snapshot_receive_ns
        self._offsets = [m.receive_ns - self._first_ns for m in recording.messages]
        self._epoch_length_ns = self._offsets[-1] + EPOCH_PAUSE_NS
        low, high = recording.update_id_range
        self._id_step = high - low + ID_GAP
        trade_low, trade_high = recording.trade_id_range or (0, 0)
        self._trade_step = trade_high - trade_low + ID_GAP
        self.epoch = -1
        self._cursor = 0
        self._id_offset = 0
        self._trade_offset = 0
        self._stamp_base_ms = 0.0
        self._last_depth: dict[str, Any] = {}
        self._start_epoch(0)

    @property
    def epoch_length_ns(self) -> int:
        """Wall-clock length of one pass over the recording, in nanoseconds."""
        return int(self._epoch_length_ns / self.speed)

    @property
    def snapshot_update_id(self) -> int:
        """``lastUpdateId`` of the current epoch's starting snapshot."""
        return int(self.recording.snapshot["lastUpdateId"]) + self._id_offset

    def epoch_start_ns(self, epoch: int) -> int:
        """Wall-clock time at which ``epoch`` starts."""
        return self._start_ns + int(epoch * self._epoch_length_ns / self.speed)

    def stamp(self, event_ms: int) -> int:
        """Map a recorded event time (ms) into the current epoch's wall clock."""
        return round(self._stamp_base_ms + event_ms / self.speed)

    def release(self, now_ns: int) -> list[Outgoing]:
        """Advance to ``now_ns``; return every message due since the previous call."""
        released: list[Outgoing] = []
        elapsed = (now_ns - self._start_ns) * self.speed
        if elapsed < 0:
            return released
        epoch = int(elapsed // self._epoch_length_ns)
        if epoch > self.epoch:
            self._release_until(self._offsets[-1], released)
            self._start_epoch(epoch)
        self._release_until(elapsed - epoch * self._epoch_length_ns, released)
        return released

    def depth_snapshot(self, limit: int) -> dict[str, Any]:
        """The REST depth answer at the current position: the best ``limit`` levels."""
        snapshot: dict[str, Any] = {"lastUpdateId": self.book.update_id}
        if self.market == USDM:
            snapshot["E"] = self._last_depth.get("E")
            snapshot["T"] = self._last_depth.get("T")
        snapshot["bids"] = _top(self.book.bids, limit)
        snapshot["asks"] = _top(self.book.asks, limit)
        return snapshot

    def partial_depth(self, levels: int) -> dict[str, Any]:
        """A partial book depth stream payload (top ``levels``) at the current position."""
        bids, asks = _top(self.book.bids, levels), _top(self.book.asks, levels)
        if self.market != USDM:
            return {"lastUpdateId": self.book.update_id, "bids": bids, "asks": asks}
        last = self._last_depth
        return {
            "e": "depthUpdate",
            "E": last.get("E"),
            "T": last.get("T"),
            "s": self.symbol,
            "U": last.get("U"),
            "u": last.get("u", self.book.update_id),
            "pu": last.get("pu"),
            "b": bids,
            "a": asks,
        }

    def _start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._cursor = 0
        self._id_offset = epoch * self._id_step
        self._trade_offset = epoch * self._trade_step
        start_ms = self.epoch_start_ns(epoch) / 1e6
        self._stamp_base_ms = start_ms - self._first_ns / 1e6 / self.speed
        snapshot = self.recording.snapshot
        self.book.clear()
        _load_side(self.book.bids, snapshot["bids"])
        _load_side(self.book.asks, snapshot["asks"])
        self.book.update_id = snapshot["lastUpdateId"] + self._id_offset
        self._last_depth = {"u": self.book.update_id}
        if "E" in snapshot:
            self._last_depth["E"] = self.stamp(snapshot["E"])
        if "T" in snapshot:
            self._last_depth["T"] = self.stamp(snapshot["T"])

    def _release_until(self, offset: float, released: list[Outgoing]) -> None:
        offsets, messages = self._offsets, self.recording.messages
        cursor, end = self._cursor, len(offsets)
        while cursor < end and offsets[cursor] <= offset:
            message = messages[cursor]
            data = orjson.loads(message.body)["data"]
            self._restamp(message.channel, data)
            if message.channel == DEPTH:
                self._apply_depth(data)
            released.append(Outgoing(message.channel, data))
            cursor += 1
        self._cursor = cursor

    def _restamp(self, channel: str, data: dict[str, Any]) -> None:
        data["s"] = self.symbol
        if "E" in data:
            data["E"] = self.stamp(data["E"])
        if "T" in data:
            data["T"] = self.stamp(data["T"])
        if channel == DEPTH:
            data["U"] += self._id_offset
            data["u"] += self._id_offset
            if "pu" in data:
                data["pu"] += self._id_offset
        elif channel == BOOK_TICKER:
            data["u"] += self._id_offset
        elif channel == TRADE:
            data["t"] += self._trade_offset
        elif channel == AGG_TRADE:
            data["a"] += self._trade_offset
            data["f"] += self._trade_offset
            data["l"] += self._trade_offset

    def _apply_depth(self, data: dict[str, Any]) -> None:
        _apply_side(self.book.bids, data["b"])
        _apply_side(self.book.asks, data["a"])
        self.book.update_id = data["u"]
        self._last_depth = data


def agg_trade_from_trade(trade: dict[str, Any], market: str) -> dict[str, Any]:
    """An ``aggTrade`` payload for one trade (an aggregate of a single trade)."""
    aggregate: dict[str, Any] = {
        "e": "aggTrade",
        "E": trade["E"],
        "s": trade["s"],
        "a": trade["t"],
        "p": trade["p"],
        "q": trade["q"],
        "f": trade["t"],
        "l": trade["t"],
        "T": trade["T"],
        "m": trade["m"],
    }
    if market != USDM:
        aggregate["M"] = trade.get("M", True)
    return aggregate


def _load_side(side: BookSide[Level], levels: list[Level]) -> None:
    for level in levels:
        if float(level[1]) != 0.0:
            side.set(float(level[0]), level)


def _apply_side(side: BookSide[Level], levels: list[Level]) -> None:
    for level in levels:
        price = float(level[0])
        if float(level[1]) == 0.0:
            side.remove(price)
        else:
            side.set(price, level)


def _top(side: BookSide[Level], limit: int) -> list[Level]:
    return [level for _, level in side.top(limit)]

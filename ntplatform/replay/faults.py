"""Faults the replay exchange can be told to inject, so every alert can be provoked on purpose.

Pure logic, no I/O and no clock of its own: callers pass the current time in
nanoseconds. The server asks this state, at each release tick and each REST request,
what to break:

- ``drop_connections``: close every WebSocket now (an exchange-side disconnect);
  it happens at once, so it is never listed as active;
- ``stall``: withhold a symbol's (or every symbol's) stream messages for some seconds;
  what would have been sent meanwhile is dropped, so the feed resumes with a gap;
- ``mute``: for some seconds, send nothing on the subscriptions to a symbol's (or every
  symbol's) streams that exist at injection, as Binance sometimes silently stops a stream
  on an open WebSocket. The connection stays open and REST keeps answering; a client
  that UNSUBSCRIBEs the stream and SUBSCRIBEs it again gets it back at once, and a
  subscription made after the injection is never muted. What a muted subscription would
  have received is dropped, so it resumes with a gap;
- ``http_429``: answer REST requests with Binance's 429 for some seconds;
- ``sequence_gap``: skip the next diff-depth event of a symbol (or of every symbol),
  once, while the exchange's own book still applies it;
- ``stale_snapshot``: for some seconds, answer a symbol's (or every symbol's) REST depth
  requests with the book as the first of them saw it, as a lagging cache would: a client
  that rebuilds meanwhile gets a snapshot older than the stream it buffered.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

DROP_CONNECTIONS = "drop_connections"
STALL = "stall"
MUTE = "mute"
HTTP_429 = "http_429"
SEQUENCE_GAP = "sequence_gap"
STALE_SNAPSHOT = "stale_snapshot"
KINDS = (DROP_CONNECTIONS, STALL, MUTE, HTTP_429, SEQUENCE_GAP, STALE_SNAPSHOT)
TIMED = (STALL, MUTE, HTTP_429, STALE_SNAPSHOT)  # take "seconds"
PER_SYMBOL = (STALL, MUTE, SEQUENCE_GAP, STALE_SNAPSHOT)  # take an optional "symbol"
MAX_SECONDS = 3600.0
NS_PER_S = 1_000_000_000


class FaultRequestError(ValueError):
    """A fault request that cannot be honoured; the message says what is wrong and what is allowed."""


@dataclass(frozen=True, slots=True)
class FaultRequest:
    """A validated request for one fault."""

    kind: str
    seconds: float | None = None
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    """An injected fault. ``symbols`` are the symbols it affects (None: every symbol)."""

    id: int
    kind: str
    symbols: frozenset[str] | None
    injected_ns: int
    expires_ns: int | None  # None for a one-shot fault, active until applied

    def affects(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols

    def describe(self, now_ns: int) -> dict[str, Any]:
        """The fault as the control endpoint and the event log show it."""
        symbols = None if self.symbols is None else sorted(self.symbols)
        described: dict[str, Any] = {"id": self.id, "fault": self.kind, "symbols": symbols}
        if self.expires_ns is not None:
            described["seconds"] = round((self.expires_ns - self.injected_ns) / NS_PER_S, 3)
            described["remaining_s"] = round(max(0, self.expires_ns - now_ns) / NS_PER_S, 3)
        return described


def parse_request(body: Any, symbols: Collection[str]) -> FaultRequest:
    """Validate a decoded JSON request body against the served ``symbols``.

    Raises :class:`FaultRequestError` naming the offending field and what is allowed.
    """
    if not isinstance(body, dict):
        raise FaultRequestError(
            'the body must be a JSON object such as {"fault": "stall", "seconds": 10, "symbol": "BTCUSDT"}'
        )
    kind = body.get("fault")
    if kind not in KINDS:
        raise FaultRequestError(f"'fault' must be one of {', '.join(KINDS)}; got {kind!r}")
    allowed = {"fault"}
    allowed |= {"seconds"} if kind in TIMED else set()
    allowed |= {"symbol"} if kind in PER_SYMBOL else set()
    unknown = sorted(str(key) for key in body if key not in allowed)
    if unknown:
        raise FaultRequestError(f"{kind} takes only {', '.join(sorted(allowed))}; got {', '.join(unknown)}")
    seconds = _seconds(kind, body.get("seconds")) if kind in TIMED else None
    symbol = _symbol(body.get("symbol"), symbols) if "symbol" in body else None
    return FaultRequest(kind, seconds, symbol)


def _seconds(kind: str, value: Any) -> float:
    if value is None:
        raise FaultRequestError(f"{kind} needs 'seconds' (a number > 0 and <= {MAX_SECONDS:g}); none given")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise FaultRequestError(f"{kind} needs 'seconds': a number > 0 and <= {MAX_SECONDS:g}; got {value!r}")
    return float(value)


def _symbol(value: Any, symbols: Collection[str]) -> str:
    served = ", ".join(sorted(symbols))
    if not isinstance(value, str) or value.upper() not in symbols:
        raise FaultRequestError(f"'symbol' must be a served symbol ({served}) or absent; got {value!r}")
    return value.upper()


class FaultSwitch:
    """The active faults of one exchange and the questions the server asks of them."""

    def __init__(self, symbols: Collection[str]) -> None:
        self.symbols = frozenset(symbols)
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def inject(self, request: FaultRequest, now_ns: int) -> Fault:
        """Record ``request`` as a fault (``drop_connections`` is returned, never kept)."""
        symbols = frozenset({request.symbol}) if request.symbol is not None else None
        if request.kind == SEQUENCE_GAP and symbols is None:
            symbols = self.symbols  # one skipped event per symbol, each applied on its own
        expires_ns = None
        if request.seconds is not None:
            expires_ns = now_ns + round(request.seconds * NS_PER_S)
        fault = Fault(next(self._ids), request.kind, symbols, now_ns, expires_ns)
        if fault.kind != DROP_CONNECTIONS:
            self._faults.append(fault)
        return fault

    def active(self, now_ns: int) -> list[Fault]:
        """The faults in force at ``now_ns``, oldest first."""
        return [fault for fault in self._faults if fault.expires_ns is None or fault.expires_ns > now_ns]

    def expire(self, now_ns: int) -> list[Fault]:
        """Forget the timed faults that have run out by ``now_ns``; return them."""
        expired = [f for f in self._faults if f.expires_ns is not None and f.expires_ns <= now_ns]
        if expired:
            self._faults = [f for f in self._faults if f not in expired]
        return expired

    def clear(self) -> list[Fault]:
        """Forget every fault; return the ones that were kept."""
        cleared, self._faults = self._faults, []
        return cleared

    def stalled(self, symbol: str, now_ns: int) -> bool:
        """Whether ``symbol``'s stream messages are withheld at ``now_ns``."""
        return any(fault.kind == STALL and fault.affects(symbol) for fault in self.active(now_ns))

    def muted_through_ns(self, symbol: str, now_ns: int) -> int | None:
        """The time up to which subscriptions to ``symbol``'s streams are muted at ``now_ns``.

        Each mute silences the subscriptions that existed when it was injected, so this is
        the injection time of the latest ``mute`` of ``symbol`` active at ``now_ns``: a
        subscription made at or before it is muted, a later one is not. None when no
        mute of ``symbol`` is active.
        """
        injected = [
            fault.injected_ns for fault in self.active(now_ns) if fault.kind == MUTE and fault.affects(symbol)
        ]
        return max(injected, default=None)

    def rate_limited_s(self, now_ns: int) -> float | None:
        """Seconds until REST requests are answered again, or None when they are now."""
        ends = [
            fault.expires_ns
            for fault in self.active(now_ns)
            if fault.kind == HTTP_429 and fault.expires_ns is not None
        ]
        return (max(ends) - now_ns) / NS_PER_S if ends else None

    def stale_snapshot(self, symbol: str, now_ns: int) -> Fault | None:
        """The latest ``stale_snapshot`` fault of ``symbol`` active at ``now_ns``, or None."""
        faults = [f for f in self.active(now_ns) if f.kind == STALE_SNAPSHOT and f.affects(symbol)]
        return faults[-1] if faults else None

    def gap_pending(self, symbol: str) -> bool:
        """Whether the next diff-depth event of ``symbol`` is to be skipped."""
        return any(fault.kind == SEQUENCE_GAP and fault.affects(symbol) for fault in self._faults)

    def take_gap(self, symbol: str) -> Fault | None:
        """Apply ``symbol``'s pending gap: return its fault (as it was), or None if none is pending.

        A gap of several symbols stays active, without ``symbol``, until each has had its own.
        """
        for index, fault in enumerate(self._faults):
            if fault.kind != SEQUENCE_GAP or not fault.affects(symbol):
                continue
            remaining = (fault.symbols or self.symbols) - {symbol}
            if remaining:
                self._faults[index] = dataclasses.replace(fault, symbols=remaining)
            else:
                del self._faults[index]
            return fault
        return None

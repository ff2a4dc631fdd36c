"""WebSocket side of the replay exchange: stream names, connections and fan-out.

Binance serves market streams on ``/stream?streams=a/b/c`` (combined: every message is
wrapped as ``{"stream": name, "data": payload}``) and ``/ws/<name>`` (raw payloads), and
takes ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` requests on either.
Subscriptions belong to one connection and remember when they were made, so that a
``mute`` fault (:mod:`ntplatform.replay.faults`) can silence exactly the subscriptions
that existed when it was injected. Each connection has its own send queue and writer
task, so a slow reader delays only itself; one that falls too far behind is
disconnected, as Binance does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from ntplatform.logs import EventLog
from ntplatform.replay.recording import AGG_TRADE, BOOK_TICKER, DEPTH, SPOT, TRADE, USDM

# Diff-depth stream names per market (suffixes after the lower-case symbol). Spot's
# ``@depth`` is the 1000 ms stream; the recording's finer updates are served under
# every speed, which still chains correctly by update id.
DIFF_DEPTH_SUFFIXES = {
    SPOT: ("@depth", "@depth@100ms", "@depth@1000ms"),
    USDM: ("@depth", "@depth@0ms", "@depth@100ms", "@depth@250ms", "@depth@500ms"),
}
PARTIAL_SPEED_SUFFIXES = {
    SPOT: ("", "@100ms", "@1000ms"),
    USDM: ("", "@0ms", "@100ms", "@250ms", "@500ms"),
}
PARTIAL_LEVELS = (5, 10, 20)
# Frames queued for one connection before it counts as too slow and is closed: about
# ten seconds of the busiest recorded symbol at speed 20.
MAX_BACKLOG = 200_000

ERROR_INVALID_REQUEST = 2
ERROR_INVALID_JSON = 3


@dataclass(frozen=True)
class SymbolStreams:
    """The stream names under which one symbol's released messages are served."""

    by_channel: dict[str, tuple[str, ...]]
    agg_from_trade: tuple[str, ...]
    partial: dict[str, int]


def symbol_streams(symbol: str, market: str, recorded_channels: Iterable[str]) -> SymbolStreams:
    """Stream names for ``symbol``; ``aggTrade`` is derived from trades if not recorded."""
    prefix = symbol.lower()
    channels = set(recorded_channels)
    by_channel = {
        DEPTH: tuple(prefix + suffix for suffix in DIFF_DEPTH_SUFFIXES[market]),
        TRADE: (f"{prefix}@trade",),
        AGG_TRADE: (f"{prefix}@aggTrade",),
        BOOK_TICKER: (f"{prefix}@bookTicker",),
    }
    derived = (f"{prefix}@aggTrade",) if AGG_TRADE not in channels and TRADE in channels else ()
    partial = {
        f"{prefix}@depth{levels}{speed}": levels
        for levels in PARTIAL_LEVELS
        for speed in PARTIAL_SPEED_SUFFIXES[market]
    }
    return SymbolStreams(by_channel, derived, partial)


def stream_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a stream name, or None when it is well formed."""
    if not isinstance(name, str) or not name:
        return f"stream names must be non-empty strings, got {name!r}"
    if len(name) > 200 or any(c.isspace() or c in '"\\/' for c in name):
        return f"invalid stream name {name!r}"
    if "@" not in name and not name.startswith("!"):
        return f"invalid stream name {name!r}"
    return None


class Connection:
    """One client WebSocket: its subscriptions and its ordered send queue.

    ``streams`` maps each subscribed stream name, in subscription order, to the time
    (nanoseconds, the hub's clock) it was subscribed.
    """

    _ids = itertools.count(1)

    def __init__(
        self,
        socket: web.WebSocketResponse,
        *,
        combined: bool,
        peer: str,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self.id = next(self._ids)
        self.socket = socket
        self._abort = abort
        self.combined = combined
        self.peer = peer
        self.streams: dict[str, int] = {}
        self.too_slow = False
        self._queue: deque[bytes] = deque()
        self._wakeup = asyncio.Event()

    def send(self, frame: bytes) -> None:
        """Queue one text frame; mark the connection too slow past the backlog limit."""
        if self.too_slow:
            return
        self._queue.append(frame)
        self._wakeup.set()
        if len(self._queue) > MAX_BACKLOG:
            # The writer may be stuck waiting for the client to read: drop the TCP
            # connection at once rather than queue a close frame behind that wait.
            self.too_slow = True
            self._queue.clear()
            if self._abort is not None:
                self._abort()

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(orjson.dumps(message))

    async def pump(self) -> None:
        """Write queued frames until the socket closes or the client is too slow."""
        socket, queue = self.socket, self._queue
        while not socket.closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.too_slow:
                return
            try:
                while queue and not socket.closed:
                    await socket.send_frame(queue.popleft(), WSMsgType.TEXT)
            except ConnectionError:
                return  # the reader side notices the closed socket and cleans up


class StreamHub:
    """Who listens to which stream name, and delivery of payloads to them."""

    def __init__(self, log: EventLog, clock_ns: Callable[[], int]) -> None:
        self.log = log
        self.clock_ns = clock_ns
        self.connections: set[Connection] = set()
        self._subscribers: dict[str, set[Connection]] = {}
        self._envelopes: dict[str, bytes] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, connection: Connection, streams: Iterable[str]) -> None:
        self.connections.add(connection)
        self.subscribe(connection, streams)

    def remove(self, connection: Connection) -> None:
        self.unsubscribe(connection, list(connection.streams))
        self.connections.discard(connection)

    def subscribe(self, connection: Connection, streams: Iterable[str]) -> None:
        """Subscribe ``connection`` to ``streams``; a stream it already has keeps its time."""
        now_ns = self.clock_ns()
        for name in streams:
            if name not in connection.streams:
                connection.streams[name] = now_ns
                self._subscribers.setdefault(name, set()).add(connection)

    def unsubscribe(self, connection: Connection, streams: Iterable[str]) -> None:
        for name in streams:
            if name in connection.streams:
                del connection.streams[name]
                listeners = self._subscribers.get(name)
                if listeners is not None:
                    listeners.discard(connection)
                    if not listeners:
                        del self._subscribers[name]

    def drop_all(self, message: bytes, timeout_s: float) -> int:
        """Start closing every connection (going away), as an exchange-side disconnect does.

        Returns at once, with how many connections are being closed. A client that does
        not answer the close handshake within ``timeout_s`` has its TCP connection dropped.
        """
        for connection in self.connections:
            task = asyncio.create_task(_close(connection.socket, message, timeout_s))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return len(self.connections)

    async def wait_dropped(self) -> None:
        """Wait until the closes started by :meth:`drop_all` have finished."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def listened(self, name: str, muted_through_ns: int | None = None) -> bool:
        """Whether any connection would receive ``name`` from :meth:`publish` (same ``muted_through_ns``)."""
        listeners = self._subscribers.get(name)
        if not listeners:
            return False
        if muted_through_ns is None:
            return True
        return any(connection.streams[name] > muted_through_ns for connection in listeners)

    def publish(self, name: str, payload: bytes, muted_through_ns: int | None = None) -> None:
        """Send one serialised payload to every subscriber of ``name``.

        With ``muted_through_ns`` (a ``mute`` fault), subscriptions to ``name`` made at or
        before that time get nothing.
        """
        listeners = self._subscribers.get(name)
        if not listeners:
            return
        envelope = self._envelopes.get(name)
        if envelope is None:
            envelope = self._envelopes[name] = b'{"stream":"' + name.encode() + b'","data":'
        combined = envelope + payload + b"}"
        for connection in listeners:
            if muted_through_ns is None or connection.streams[name] > muted_through_ns:
                connection.send(combined if connection.combined else payload)

    def handle_request(self, connection: Connection, text: str) -> None:
        """Answer one client request (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, ...)."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            connection.send_json(_error(ERROR_INVALID_JSON, f"Invalid JSON: {exc}", None))
            return
        if not isinstance(request, dict):
            connection.send_json(_error(ERROR_INVALID_REQUEST, "Invalid request: not an object", None))
            return
        request_id = request.get("id")
        if not (
            request_id is None or isinstance(request_id, str) or (type(request_id) is int and request_id >= 0)
        ):
            message = "Invalid request: request ID must be an unsigned integer or a string"
            connection.send_json(_error(ERROR_INVALID_REQUEST, message, None))
            return
        problem, result = self._perform(connection, request.get("method"), request.get("params"))
        if problem is not None:
            connection.send_json(_error(ERROR_INVALID_REQUEST, f"Invalid request: {problem}", request_id))
        else:
            connection.send_json({"result": result, "id": request_id})

    def _perform(self, connection: Connection, method: Any, params: Any) -> tuple[str | None, Any]:
        if method == "LIST_SUBSCRIPTIONS":
            return None, list(connection.streams)
        if method in ("GET_PROPERTY", "SET_PROPERTY"):
            return _property(connection, method, params)
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return f"unknown method {method!r}", None
        if not isinstance(params, list):
            return "'params' must be a list of stream names", None
        for name in params:
            problem = stream_name_problem(name)
            if problem is not None:
                return problem, None
        if method == "SUBSCRIBE":
            self.subscribe(connection, params)
        else:
            self.unsubscribe(connection, params)
        self.log.debug("ws_subscription_changed", connection=connection.id, method=method, streams=params)
        return None, None


async def _close(socket: web.WebSocketResponse, message: bytes, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(socket.close(code=WSCloseCode.GOING_AWAY, message=message), timeout_s)


def _property(connection: Connection, method: str, params: Any) -> tuple[str | None, Any]:
    """GET_PROPERTY / SET_PROPERTY of the one property Binance has: ``combined``."""
    if method == "GET_PROPERTY":
        if params != ["combined"]:
            return "unknown property", None
        return None, connection.combined
    if not (isinstance(params, list) and len(params) == 2 and params[0] == "combined"):
        return "unknown property", None
    if type(params[1]) is not bool:
        return "property 'combined' takes a boolean", None
    connection.combined = params[1]
    return None, None


def _error(code: int, message: str, request_id: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": message}, "id": request_id}

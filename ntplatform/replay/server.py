"""The replay exchange: a Binance-compatible REST + WebSocket server on loopback.

It serves recordings (see :mod:`ntplatform.replay.recording`) so that NautilusTrader's
own Binance data client, given this server's base URLs, works as against Binance:
messages are released by the wall clock (scaled by ``speed``), re-stamped, and the
replay loops forever with an update-id gap at each loop. Run it with
``ntplatform replay-exchange`` or ``python -m ntplatform.replay.server``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ntplatform.errors import ConfigError, RecordingError
from ntplatform.logs import LEVELS, EventLog
from ntplatform.replay.exchange_info import build_exchange_info, default_http_dir, parse_aliases
from ntplatform.replay.faults import FaultSwitch
from ntplatform.replay.market import Outgoing, SymbolReplay, agg_trade_from_trade
from ntplatform.replay.recording import DEPTH, TRADE, Recording, load_recordings
from ntplatform.replay.rest import FaultControl, RestApi
from ntplatform.replay.streams import Connection, StreamHub, stream_name_problem, symbol_streams

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790
DEFAULT_RECORDINGS = Path("..") / "shared" / "data" / "binance" / "spot"
# How often due messages are released. 5 ms keeps added latency far below the
# recordings' own 100 ms depth interval and costs ~200 wake-ups a second.
TICK_S = 0.005


class WallClock:
    """Wall-clock nanoseconds that never step back: start time plus monotonic progress."""

    def __init__(self) -> None:
        self._wall_start = time.time_ns()
        self._monotonic_start = time.monotonic_ns()

    def __call__(self) -> int:
        return self._wall_start + time.monotonic_ns() - self._monotonic_start


class ReplayExchange:
    """The server: one :class:`SymbolReplay` per served symbol, REST routes and streams."""

    def __init__(
        self,
        recordings: Sequence[Recording],
        exchange_info: dict,
        *,
        speed: float = 1.0,
        aliases: dict[str, str] | None = None,
        log: EventLog | None = None,
        clock_ns: Callable[[], int] | None = None,
    ) -> None:
        self.log = log or EventLog("replay-exchange")
        self.clock_ns = clock_ns or WallClock()
        self.market = recordings[0].market
        self.speed = speed
        start_ns = self.clock_ns()
        by_symbol = {recording.symbol: recording for recording in recordings}
        sources = {symbol: symbol for symbol in by_symbol} | dict(aliases or {})
        self.replays = {
            symbol: SymbolReplay(by_symbol[source], start_ns=start_ns, speed=speed, symbol=symbol)
            for symbol, source in sources.items()
        }
        self.streams = {
            symbol: symbol_streams(symbol, self.market, replay.recording.channels)
            for symbol, replay in self.replays.items()
        }
        self.hub = StreamHub(self.log, self.clock_ns)
        self.faults = FaultSwitch(self.replays)
        self.rest = RestApi(self.market, self.replays, exchange_info, self.clock_ns, self.log, self.faults)
        self.fault_control = FaultControl(self.faults, self.clock_ns, self.log, self._drop_connections)
        self.release_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._epochs = dict.fromkeys(self.replays, -1)

    @property
    def symbols(self) -> list[str]:
        return list(self.replays)

    def build_app(self) -> web.Application:
        """The aiohttp application (REST routes of the market plus the stream endpoints)."""
        app = web.Application(middlewares=[self.rest.middleware])
        app.add_routes(self.rest.routes())
        app.add_routes(self.fault_control.routes())
        app.add_routes(
            [
                web.get("/stream", self._websocket),
                web.get("/ws", self._websocket),
                web.get("/ws/{streams:.+}", self._websocket),
            ]
        )
        return app

    async def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
        """Listen on ``host:port`` (0 picks a free port), start releasing; return the port."""
        self.release_once(self.clock_ns())
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.release_task = asyncio.create_task(self._release_forever(), name="replay-release")
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop releasing, close every client connection and the listener."""
        if self.release_task is not None:
            self.release_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.release_task
        await self.hub.wait_dropped()
        for connection in list(self.hub.connections):
            await connection.socket.close(code=1001, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()

    async def _release_forever(self) -> None:
        while True:
            self.release_once(self.clock_ns())
            await asyncio.sleep(TICK_S)

    def release_once(self, now_ns: int) -> None:
        """Release every message due at ``now_ns`` to the subscribed connections.

        A stalled symbol's messages are released (its book advances) but not sent; a muted
        symbol's are not sent to the subscriptions its ``mute`` faults silence.
        """
        for fault in self.faults.expire(now_ns):
            self.log.info("fault_cleared", reason="expired", **fault.describe(now_ns))
        for symbol, replay in self.replays.items():
            released = replay.release(now_ns)
            if replay.epoch != self._epochs[symbol]:
                self._epochs[symbol] = replay.epoch
                self.log.info(
                    "replay_epoch_started",
                    symbol=symbol,
                    epoch=replay.epoch,
                    snapshot_update_id=replay.snapshot_update_id,
                )
            if released and not self.faults.stalled(symbol, now_ns):
                self._publish(symbol, replay, released, self.faults.muted_through_ns(symbol, now_ns))

    def _publish(
        self, symbol: str, replay: SymbolReplay, released: list[Outgoing], muted_through_ns: int | None
    ) -> None:
        """Send ``released`` to every subscription of ``symbol``'s streams made after ``muted_through_ns``."""
        hub, streams = self.hub, self.streams[symbol]
        derive_aggregates = any(hub.listened(name, muted_through_ns) for name in streams.agg_from_trade)
        for message in released:
            if message.channel == DEPTH and self._skip_for_gap(symbol, message, muted_through_ns):
                continue
            self._publish_to(streams.by_channel[message.channel], message.data, muted_through_ns)
            if message.channel == TRADE and derive_aggregates:
                aggregate = agg_trade_from_trade(message.data, self.market)
                self._publish_to(streams.agg_from_trade, aggregate, muted_through_ns)
        if any(message.channel == DEPTH for message in released):
            for name, levels in streams.partial.items():
                if hub.listened(name, muted_through_ns):
                    hub.publish(name, orjson.dumps(replay.partial_depth(levels)), muted_through_ns)

    def _skip_for_gap(self, symbol: str, message: Outgoing, muted_through_ns: int | None) -> bool:
        """Whether to withhold this diff-depth event for a pending ``sequence_gap`` fault.

        The gap is spent only on an event someone receives (not muted), so a client does see it.
        """
        if not self.faults.gap_pending(symbol):
            return False
        depth_streams = self.streams[symbol].by_channel[DEPTH]
        if not any(self.hub.listened(name, muted_through_ns) for name in depth_streams):
            return False
        fault = self.faults.take_gap(symbol)
        if fault is not None:
            described = fault.describe(self.clock_ns()) | {"symbols": [symbol]}
            skipped = {"skipped_first_update_id": message.data["U"], "skipped_update_id": message.data["u"]}
            self.log.info("fault_cleared", reason="applied", **described, **skipped)
        return True

    def _drop_connections(self, timeout_s: float) -> int:
        return self.hub.drop_all(b"replay fault: drop_connections", timeout_s)

    def _publish_to(self, names: Sequence[str], data: dict[str, Any], muted_through_ns: int | None) -> None:
        """Serialise ``data`` once, if anyone receives one of ``names``, and send it."""
        payload = None
        for name in names:
            if self.hub.listened(name, muted_through_ns):
                if payload is None:
                    payload = orjson.dumps(data)
                self.hub.publish(name, payload, muted_through_ns)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        combined = request.path == "/stream"
        raw = request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        initial = [name for name in raw.split("/") if name]
        for name in initial:
            problem = stream_name_problem(name)
            if problem is not None:
                return web.json_response({"code": -1100, "msg": problem}, status=400)
        socket = web.WebSocketResponse()
        transport = request.transport
        connection = Connection(
            socket,
            combined=combined,
            peer=str(request.remote),
            abort=transport.abort if transport is not None else None,
        )
        # Subscribed before the handshake completes, so no message released after the
        # client sees the connection open (and asks for a snapshot) can be missed.
        self.hub.add(connection, initial)
        pump: asyncio.Task[None] | None = None
        try:
            await socket.prepare(request)
            self.log.info("ws_connected", connection=connection.id, peer=connection.peer, streams=initial)
            pump = asyncio.create_task(connection.pump())
            async for message in socket:
                if message.type == web.WSMsgType.TEXT:
                    self.hub.handle_request(connection, message.data)
        finally:
            self.hub.remove(connection)
            if pump is not None:
                pump.cancel()
                emit = self.log.warning if connection.too_slow else self.log.info
                emit(
                    "ws_disconnected",
                    connection=connection.id,
                    peer=connection.peer,
                    reason="too_slow" if connection.too_slow else "closed",
                )
        return socket


def build_exchange(
    paths: Sequence[Path],
    *,
    speed: float = 1.0,
    http_dir: Path | None = None,
    aliases: dict[str, str] | None = None,
    log: EventLog | None = None,
) -> ReplayExchange:
    """Load and check recordings and exchangeInfo, and build the (not yet started) server."""
    if not (math.isfinite(speed) and 0 < speed <= MAX_SPEED):
        raise ConfigError("--speed", speed, f"a number above 0 and at most {MAX_SPEED:g}")
    recordings = load_recordings(paths)
    aliases = aliases or {}
    market = recordings[0].market
    info = build_exchange_info(
        http_dir or default_http_dir(paths), market, [r.symbol for r in recordings], aliases
    )
    return ReplayExchange(recordings, info, speed=speed, aliases=aliases, log=log)


def serve(
    paths: list[Path],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    speed: float = 1.0,
    http_dir: Path | None = None,
    aliases: dict[str, str] | None = None,
) -> int:
    """Serve ``paths`` until SIGINT or SIGTERM; return the exit code (0 on a clean stop).

    Raises RecordingError or ConfigError before listening when the input is bad.
    """
    log = EventLog("replay-exchange", level=_log_level())
    exchange = build_exchange(paths, speed=speed, http_dir=http_dir, aliases=aliases, log=log)
    return asyncio.run(_serve_until_signal(exchange, host, port, log))


async def _serve_until_signal(exchange: ReplayExchange, host: str, port: int, log: EventLog) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound = await exchange.start(host, port)
    log.info(
        "replay_started",
        host=host,
        port=bound,
        market=exchange.market,
        symbols=exchange.symbols,
        speed=exchange.speed,
        base_url_http=f"http://{host}:{bound}",
        base_url_ws=f"ws://{host}:{bound}",
    )
    releasing = exchange.release_task
    stopping = asyncio.create_task(stop.wait())
    watched: list[asyncio.Task[Any]] = [stopping] if releasing is None else [stopping, releasing]
    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if releasing is not None and releasing.done() and not releasing.cancelled():
        error = releasing.exception()
        log.error("fatal_error", error=repr(error))
        code = 1
    stopping.cancel()
    await exchange.stop()
    log.info("shutdown_complete", exit_code=code)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``replay-exchange`` options to ``parser``."""
    parser.add_argument(
        "--path",
        dest="paths",
        action="append",
        type=Path,
        metavar="PATH",
        help="recording file or folder of *.gz (repeatable; default: $NT_REPLAY_PATH, "
        f"else {DEFAULT_RECORDINGS} if it exists)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="listen address")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="listen port (0: any free)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    parser.add_argument(
        "--alias",
        dest="aliases",
        action="append",
        default=[],
        metavar="NEWSYM=SRCSYM",
        help="also serve SRCSYM's recording under the name NEWSYM (repeatable)",
    )
    parser.add_argument(
        "--http-dir",
        type=Path,
        default=None,
        help="folder with spot_/usdm_exchange_info.json (default: 'http' beside the recordings)",
    )


MAX_SPEED = 1000.0  # beyond this the release loop cannot keep the recorded spacing anyway


def run(args: argparse.Namespace) -> int:
    """Run the replay exchange from parsed arguments; bad input prints one line, exit 2."""
    try:
        if not 0 <= args.port <= 65535:
            raise ConfigError("--port", args.port, "a port from 0 (any free one) to 65535")
        paths = resolve_paths(args.paths)
        aliases = parse_aliases(args.aliases)
        return serve(paths, args.host, args.port, args.speed, args.http_dir, aliases)
    except (RecordingError, ConfigError) as exc:
        sys.stderr.write(f"replay-exchange: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"replay-exchange: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1


def resolve_paths(paths: Sequence[Path] | None) -> list[Path]:
    """The recordings to serve: given paths, else ``NT_REPLAY_PATH``, else the default."""
    if paths:
        return list(paths)
    configured = os.environ.get("NT_REPLAY_PATH", "")
    if configured:
        return [Path(part) for part in configured.split(os.pathsep) if part]
    if DEFAULT_RECORDINGS.exists():
        return [DEFAULT_RECORDINGS]
    raise ConfigError(
        "NT_REPLAY_PATH",
        configured,
        f"a recording file or folder (none given, no {DEFAULT_RECORDINGS})",
    )


def _log_level() -> str:
    level = os.environ.get("NT_LOG_LEVEL", "info").lower()
    if level not in LEVELS:
        raise ConfigError("NT_LOG_LEVEL", level, "debug, info, warning or error")
    return level


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ntplatform.replay.server``."""
    parser = argparse.ArgumentParser(prog="replay-exchange", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

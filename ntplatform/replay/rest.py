"""REST side of the replay exchange: the Binance endpoints NautilusTrader's data client calls.

Spot serves ``/api/v3/...`` and ``/sapi/v1/asset/tradeFee``; USDⓈ-M futures serve
``/fapi/...`` (including the account calls its instrument provider makes before it
loads instruments). Errors carry Binance's codes and messages; any other path is a
404 with a JSON body. While an ``http_429`` fault is active every Binance path answers
429 with a ``Retry-After`` header; while a ``stale_snapshot`` fault is, depth answers repeat
the first one it saw. ``/_replay/faults`` (a path Binance never uses)
injects, lists and clears faults (:mod:`ntplatform.replay.faults`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from ntplatform.logs import EventLog
from ntplatform.replay import exchange_info as catalogue
from ntplatform.replay.faults import DROP_CONNECTIONS, FaultRequestError, FaultSwitch, parse_request
from ntplatform.replay.market import SymbolReplay
from ntplatform.replay.recording import SPOT

SPOT_DEPTH_DEFAULT, SPOT_DEPTH_MAX = 100, 5000
FUTURES_DEPTH_DEFAULT = 500
FUTURES_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
# A real depth request takes tens of milliseconds. Answering after a short pause lets a
# SUBSCRIBE the client sent just before (on its WebSocket) take effect first, so the
# snapshot is never older than the first diff event the client receives.
SNAPSHOT_LATENCY_S = 0.02
BINANCE_PATHS = ("/api/", "/sapi/", "/fapi/")
TOO_MANY_REQUESTS = (
    "Too many requests; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
FAULTS_PATH = "/_replay/faults"
# How long drop_connections waits for clients to answer the close handshake before it
# drops their TCP connections.
DROP_CLOSE_TIMEOUT_S = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BinanceError(Exception):
    """An error answered as Binance does: HTTP status plus ``{"code", "msg"}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid_symbol() -> BinanceError:
    return BinanceError(400, -1121, "Invalid symbol.")


def missing_parameter(name: str) -> BinanceError:
    message = f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    return BinanceError(400, -1102, message)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class RestApi:
    """The REST endpoints of one market, answered from the replays' current state."""

    def __init__(
        self,
        market: str,
        replays: Mapping[str, SymbolReplay],
        exchange_info: dict[str, Any],
        clock_ns: Callable[[], int],
        log: EventLog,
        faults: FaultSwitch | None = None,
    ) -> None:
        self.market = market
        self.replays = replays
        self.exchange_info = exchange_info
        self.clock_ns = clock_ns
        self.log = log
        self.faults = faults
        # Depth answers kept for stale_snapshot faults, by (fault id, symbol, limit).
        self._stale_depths: dict[tuple[int, str, int], dict[str, Any]] = {}

    def routes(self) -> list[web.RouteDef]:
        """The routes of this market."""
        if self.market == SPOT:
            return [
                web.get("/api/v3/ping", self.ping),
                web.get("/api/v3/time", self.time),
                web.get("/api/v3/exchangeInfo", self.spot_exchange_info),
                web.get("/api/v3/depth", self.depth),
                web.get("/sapi/v1/asset/tradeFee", self.spot_trade_fee),
            ]
        return [
            web.get("/fapi/v1/ping", self.ping),
            web.get("/fapi/v1/time", self.time),
            web.get("/fapi/v1/exchangeInfo", self.futures_exchange_info),
            web.get("/fapi/v1/depth", self.depth),
            web.get("/fapi/v1/commissionRate", self.futures_commission_rate),
            web.get("/fapi/v2/account", self.futures_account),
            web.get("/fapi/v2/positionRisk", self.futures_position_risk),
            web.get("/fapi/v3/positionRisk", self.futures_position_risk),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Turn errors into Binance-style JSON and log each request at debug level."""
        started = time.perf_counter()
        try:
            response = self._rate_limited(request) or await handler(request)
        except BinanceError as exc:
            response = json_response({"code": exc.code, "msg": exc.message}, exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = f"Path {request.path}, Method {request.method} is invalid"
            response = json_response({"code": -5000, "msg": message}, exc.status)
        self.log.debug(
            "rest_request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return response

    def _rate_limited(self, request: web.Request) -> web.Response | None:
        """Binance's 429 answer while an ``http_429`` fault is active, else None."""
        if self.faults is None or not request.path.startswith(BINANCE_PATHS):
            return None
        retry_s = self.faults.rate_limited_s(self.clock_ns())
        if retry_s is None:
            return None
        response = json_response({"code": -1003, "msg": TOO_MANY_REQUESTS}, 429)
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_s)))
        return response

    def now_ms(self) -> int:
        return self.clock_ns() // 1_000_000

    async def ping(self, request: web.Request) -> web.Response:
        return json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return json_response({"serverTime": self.now_ms()})

    async def spot_exchange_info(self, request: web.Request) -> web.Response:
        query = request.query
        if "symbol" in query and "symbols" in query:
            raise BinanceError(400, -1128, "Combination of optional parameters invalid.")
        wanted: list[str] | None = None
        if "symbol" in query:
            wanted = [query["symbol"]]
        elif "symbols" in query:
            wanted = _symbol_list(query["symbols"])
        return json_response(self._exchange_info(wanted))

    async def futures_exchange_info(self, request: web.Request) -> web.Response:
        return json_response(self._exchange_info(None))

    def _exchange_info(self, wanted: list[str] | None) -> dict[str, Any]:
        entries = self.exchange_info["symbols"]
        if wanted is not None:
            by_name = {entry["symbol"]: entry for entry in entries}
            if any(symbol not in by_name for symbol in wanted):
                raise invalid_symbol()
            entries = [by_name[symbol] for symbol in wanted]
        info = dict(self.exchange_info)
        info["serverTime"] = self.now_ms()
        info["symbols"] = entries
        return info

    async def depth(self, request: web.Request) -> web.Response:
        replay = self._replay(request.query.get("symbol"))
        limit = self._depth_limit(request.query.get("limit"))
        await asyncio.sleep(SNAPSHOT_LATENCY_S)
        return json_response(self._depth_answer(replay, limit))

    def _depth_answer(self, replay: SymbolReplay, limit: int) -> dict[str, Any]:
        """The current book, or while a ``stale_snapshot`` fault lasts the one it first answered."""
        fault = self.faults.stale_snapshot(replay.symbol, self.clock_ns()) if self.faults else None
        if fault is None:
            for key in [k for k in self._stale_depths if k[1] == replay.symbol]:
                del self._stale_depths[key]
            return replay.depth_snapshot(limit)
        key = (fault.id, replay.symbol, limit)
        if key not in self._stale_depths:
            self._stale_depths[key] = replay.depth_snapshot(limit)
        return self._stale_depths[key]

    def _replay(self, symbol: str | None) -> SymbolReplay:
        if not symbol:
            raise missing_parameter("symbol")
        replay = self.replays.get(symbol)
        if replay is None:
            raise invalid_symbol()
        return replay

    def _depth_limit(self, raw: str | None) -> int:
        spot = self.market == SPOT
        if raw is None:
            return SPOT_DEPTH_DEFAULT if spot else FUTURES_DEPTH_DEFAULT
        if not raw.isdigit() or len(raw) > 20:
            message = "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            raise BinanceError(400, -1100, message)
        limit = int(raw)
        if spot and limit >= 1:
            return min(limit, SPOT_DEPTH_MAX)
        if not spot and limit in FUTURES_DEPTH_LIMITS:
            return limit
        raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")

    async def spot_trade_fee(self, request: web.Request) -> web.Response:
        _require_signature(request)
        symbol = request.query.get("symbol")
        symbols = [self._replay(symbol).symbol] if symbol else list(self.replays)
        return json_response(catalogue.trade_fees(symbols))

    async def futures_commission_rate(self, request: web.Request) -> web.Response:
        _require_signature(request)
        replay = self._replay(request.query.get("symbol"))
        return json_response(catalogue.futures_commission_rate(replay.symbol))

    async def futures_account(self, request: web.Request) -> web.Response:
        _require_signature(request)
        return json_response(catalogue.futures_account(self.now_ms()))

    async def futures_position_risk(self, request: web.Request) -> web.Response:
        _require_signature(request)
        symbol = request.query.get("symbol")
        if symbol:
            self._replay(symbol)
        return json_response([])  # no open positions: the replay has no account


def _symbol_list(raw: str) -> list[str]:
    try:
        symbols = orjson.loads(raw)
    except orjson.JSONDecodeError:
        symbols = None
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        message = "Illegal characters found in parameter 'symbols'; legal range is a JSON list."
        raise BinanceError(400, -1100, message)
    return symbols


def _require_signature(request: web.Request) -> None:
    """Check a signed call's shape; any key and secret pass (market data needs none)."""
    if not request.headers.get("X-MBX-APIKEY"):
        raise BinanceError(401, -2014, "API-key format invalid.")
    for name in ("timestamp", "signature"):
        if not request.query.get(name):
            raise missing_parameter(name)


class FaultControl:
    """``/_replay/faults``: POST injects a fault, GET lists the active ones, DELETE clears them."""

    def __init__(
        self,
        faults: FaultSwitch,
        clock_ns: Callable[[], int],
        log: EventLog,
        drop_connections: Callable[[float], int],
    ) -> None:
        self.faults = faults
        self.clock_ns = clock_ns
        self.log = log
        self._drop_connections = drop_connections

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(FAULTS_PATH, self.list_faults),
            web.post(FAULTS_PATH, self.inject),
            web.delete(FAULTS_PATH, self.clear),
        ]

    def _active(self, now_ns: int) -> list[dict[str, Any]]:
        return [fault.describe(now_ns) for fault in self.faults.active(now_ns)]

    async def list_faults(self, request: web.Request) -> web.Response:
        return json_response({"active": self._active(self.clock_ns())})

    async def inject(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return json_response({"error": f"the body is not JSON ({exc}); send a JSON object"}, 400)
        try:
            fault_request = parse_request(body, self.faults.symbols)
        except FaultRequestError as exc:
            return json_response({"error": str(exc)}, 400)
        now_ns = self.clock_ns()
        injected = self.faults.inject(fault_request, now_ns).describe(now_ns)
        if fault_request.kind == DROP_CONNECTIONS:
            injected["connections"] = self._drop_connections(DROP_CLOSE_TIMEOUT_S)
        self.log.warning("fault_injected", **injected)
        return json_response({"injected": injected, "active": self._active(self.clock_ns())})

    async def clear(self, request: web.Request) -> web.Response:
        now_ns = self.clock_ns()
        cleared = [fault.describe(now_ns) for fault in self.faults.clear()]
        for fault in cleared:
            self.log.info("fault_cleared", reason="cleared", **fault)
        return json_response({"cleared": cleared, "active": []})

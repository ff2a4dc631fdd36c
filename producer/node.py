"""Wires a producer node: settings -> TradingNodeConfig, then ``main()`` runs it.

``build_node_config`` is a pure function; ``main`` builds the node, binds the actor to
the Redis publisher, metrics and health, runs until SIGTERM/SIGINT and disposes of
everything in ``finally``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

from nautilus_trader.adapters.binance import BINANCE
from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
from nautilus_trader.config import (
    ImportableActorConfig,
    InstrumentProviderConfig,
    LoggingConfig,
    TradingNodeConfig,
)
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.identifiers import TraderId

from ntplatform.errors import ConfigError
from ntplatform.logs import EventLog, redact
from ntplatform.settings import Settings, load_settings
from producer import binance_client
from producer.actor import AnalyticsActor, Runtime
from producer.client_factory import SequencedBinanceDataClientFactory
from producer.health import NodeState
from producer.http_server import NodeHttpServer
from producer.metrics import ProducerMetrics
from producer.publisher import ReportPublisher

# Public market data needs no account, but NautilusTrader's client refuses to build
# without credentials; any value works for the public endpoints it calls.
PUBLIC_DATA_CREDENTIAL = "ntplatform-public-market-data"


class _ConnectionWatchdog:
    """Stops the node with an error if the exchange client never connected.

    NautilusTrader keeps a node running after its connection timeout even when the data
    client failed, which would leave a silent producer; exiting lets the supervisor
    restart it with backoff and tells the operator why.
    """

    def __init__(self, node: TradingNode, log: EventLog, exchange: str, timeout_s: float) -> None:
        self._node = node
        self.timeout_s = timeout_s
        self._log = log
        self._exchange = exchange
        self.failed = False

    def check(self) -> None:
        if self._node.kernel.data_engine.check_connected():
            return
        self.failed = True
        error = binance_client.observability.connect_error
        hint = "check NT_BINANCE_HTTP_URL / NT_BINANCE_WS_URL and that the exchange answers"
        if error and "-1121" in error:
            hint = "the exchange does not list a symbol in SYMBOLS (for NT_BINANCE_ACCOUNT)"
        self._log.error(
            "fatal_error",
            reason="exchange_connect_failed" if error else "exchange_unreachable",
            exchange=self._exchange,
            error=error,
            waited_s=self.timeout_s,
            hint=hint,
        )
        self._node.stop()


def instrument_id(symbol: str, account: str) -> str:
    """NautilusTrader's instrument id for a Binance symbol."""
    return f"{symbol}-PERP.BINANCE" if account == "usdm" else f"{symbol}.BINANCE"


def build_node_config(settings: Settings, environ: Mapping[str, str]) -> TradingNodeConfig:
    """The NautilusTrader node for these settings: one Binance data client, one actor."""
    ids = tuple(instrument_id(s, settings.binance_account) for s in settings.symbols)
    account = (
        BinanceAccountType.USDT_FUTURES if settings.binance_account == "usdm" else BinanceAccountType.SPOT
    )
    data_client = BinanceDataClientConfig(
        api_key=environ.get("BINANCE_API_KEY") or PUBLIC_DATA_CREDENTIAL,
        api_secret=environ.get("BINANCE_API_SECRET") or PUBLIC_DATA_CREDENTIAL,
        account_type=account,
        base_url_http=settings.binance_http_url,
        base_url_ws=settings.binance_ws_url,
        instrument_provider=InstrumentProviderConfig(load_ids=frozenset(ids)),
        update_instruments_interval_mins=None if settings.uses_replay else 60,
    )
    actor = ImportableActorConfig(
        actor_path="producer.actor:AnalyticsActor",
        config_path="producer.actor:AnalyticsActorConfig",
        config={
            "component_id": "AnalyticsActor",
            "instrument_ids": ids,
            "report_period_ms": settings.report_period_ms,
            "slow_period_ms": settings.slow_period_ms,
            "book_depth": settings.book_depth,
            "trade_window_min": settings.trade_window_min,
            "clock_offset_ms": settings.clock_offset_ms,
        },
    )
    nautilus_level = "INFO" if settings.log_level == "debug" else "WARNING"
    return TradingNodeConfig(
        trader_id=TraderId("NTPLATFORM-001"),
        logging=LoggingConfig(log_level=nautilus_level, log_colors=False),
        data_clients={BINANCE: data_client},
        actors=[actor],
        timeout_connection=settings.exchange_connect_timeout_sec,
        timeout_disconnection=5.0,
        timeout_post_stop=1.0,
    )


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run one producer node until it is told to stop. Returns the exit code."""
    env = os.environ if environ is None else environ
    try:
        settings = load_settings(env)
    except ConfigError as error:
        print(f"ntplatform producer: {error}", file=sys.stderr)
        return 2
    log = EventLog("producer", settings.log_level)
    log.static_fields = {"node_id": settings.node_id}
    log.info("configuration_loaded", **redact(settings.public_dict()))
    metrics = ProducerMetrics()
    state = NodeState(settings.node_id, settings.enable_multi_instance)
    try:
        http = NodeHttpServer(settings.metrics_host, settings.metrics_port, metrics, state)
    except OSError as error:
        log.error(
            "fatal_error",
            reason="metrics_port_unavailable",
            address=f"{settings.metrics_host}:{settings.metrics_port}",
            error=str(error),
        )
        print(
            f"ntplatform producer: cannot listen on {settings.metrics_host}:"
            f"{settings.metrics_port} ({error.strerror}); set NT_METRICS_HOST / NT_METRICS_PORT",
            file=sys.stderr,
        )
        return 1
    binance_client.observability.metrics = metrics
    binance_client.observability.log = log
    offset_ms = settings.clock_offset_ms
    publisher = ReportPublisher(
        settings, metrics, state, log, wall_ms=lambda: int(time.time() * 1000) + offset_ms
    )
    node: TradingNode | None = None
    try:
        node = TradingNode(config=build_node_config(settings, env))
        node.add_data_client_factory(BINANCE, SequencedBinanceDataClientFactory)
        node.build()
        actor = next(a for a in node.trader.actors() if isinstance(a, AnalyticsActor))
        built = node
        failures: list[str] = []

        def fail_node(reason: str) -> None:
            failures.append(reason)
            built.stop()

        actor.bind(Runtime(publisher, metrics, state, log, fail_node=fail_node))
        http.start()
        publisher.start()
        state.running = True
        watchdog = _ConnectionWatchdog(
            node, log, settings.binance_http_url or "binance", settings.exchange_connect_timeout_sec
        )
        node.kernel.loop.call_later(watchdog.timeout_s + 1.0, watchdog.check)
        log.info(
            "node_started",
            symbols=list(settings.symbols),
            metrics_port=http.port,
            exchange=settings.binance_http_url or "binance",
        )
        node.run()
        if "no_instrument_available" in failures:
            return 2  # no symbol of SYMBOLS is listed: a setting to fix, a restart cannot help
        if watchdog.failed or failures:
            return 1
    except Exception as error:
        log.error("fatal_error", reason=type(error).__name__, error=str(error))
        return 1
    finally:
        state.running = False
        publisher.stop()
        http.stop()
        if node is not None:
            node.dispose()
        log.info("shutdown_complete", reports_published=metrics.published_counts())
    return 0

"""The analytics actor: keeps a book per symbol from NautilusTrader's data and reports.

Handlers only convert NautilusTrader objects to plain numbers for
``ntplatform.tracker.SymbolTracker``; the maths lives there. The fast cycle builds
one report per synced symbol and hands the batch to the publisher; the slow cycle
refreshes the volume profile and volatility. A timer event that arrives later than
one period (the event loop was busy) is skipped rather than run late, so cycles never
pile up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from nautilus_trader.common.actor import Actor
from nautilus_trader.common.config import ActorConfig, NonNegativeInt, PositiveInt
from nautilus_trader.common.events import TimeEvent
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, BookType, OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity

from ntplatform.cycles import CycleDecision, decide
from ntplatform.logs import EventLog
from ntplatform.tracker import SymbolTracker
from producer.binance_client import RESUBSCRIBE_TOPIC, binance_symbol, book_status_topic
from producer.health import NodeState
from producer.metrics import ProducerMetrics

FAST_TIMER = "fast_cycle"
SLOW_TIMER = "slow_cycle"
AGGRESSORS = {AggressorSide.BUYER: "buyer", AggressorSide.SELLER: "seller"}


class AnalyticsActorConfig(ActorConfig, frozen=True):
    """Settings of the analytics actor (a subset of the node's ``Settings``)."""

    instrument_ids: tuple[str, ...]
    report_period_ms: PositiveInt = 250
    slow_period_ms: NonNegativeInt = 2000
    book_depth: PositiveInt = 20
    trade_window_min: PositiveInt = 30
    clock_offset_ms: int = 0  # injected clock skew, for tests: shifts ts_published_ms only


class ReportOutlet(Protocol):
    """Where reports go and where the symbols to follow come from: the node's Redis publisher
    (``producer.publisher``) or a backfill's Parquet sink (``producer.backfill``)."""

    def set_available(self, symbols: list[str]) -> None: ...
    def target_symbols(self) -> list[str]: ...
    def submit(self, reports: dict[str, dict[str, Any]]) -> None: ...
    def hand_over(self) -> None: ...
    def watch_target(self, callback: Callable[[list[str]], None]) -> None: ...
    def on_resubscribe(self, callback: Callable[[str], bool]) -> None: ...


class Runtime:
    """The node's I/O edges that the actor reports to, bound before the node runs."""

    def __init__(
        self,
        publisher: ReportOutlet,
        metrics: ProducerMetrics,
        state: NodeState,
        log: EventLog,
        fail_node: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.fail_node = (
            fail_node  # stops the node after a fatal_error; it then exits 1 (2: no symbol listed)
        )
        self.publisher = publisher
        self.metrics = metrics
        self.state = state
        self.log = log


class AnalyticsActor(Actor):
    """Computes and publishes the per-symbol analytics reports."""

    def __init__(self, config: AnalyticsActorConfig) -> None:
        super().__init__(config)
        self._config = config
        self._window_ms = config.trade_window_min * 60_000
        self._instrument_ids = [InstrumentId.from_str(i) for i in config.instrument_ids]
        # Trackers of the symbols this node follows now, keyed by NautilusTrader's symbol
        # (BTCUSDT-PERP); reports use the exchange's (BTCUSDT).
        self._trackers: dict[str, SymbolTracker] = {}
        self._following = False  # between on_start and on_stop
        self._last_fast_ns: int | None = None  # when each cycle last ran
        self._last_slow_ns: int | None = None
        self._runtime: Runtime | None = None

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("AnalyticsActor.bind(runtime) must be called before the node runs")
        return self._runtime

    # -- lifecycle --------------------------------------------------------------------------

    def on_start(self) -> None:
        missing = [i for i in self._instrument_ids if self.cache.instrument(i) is None]
        for instrument_id in missing:
            self.runtime.log.error(
                "instrument_not_found",
                symbol=binance_symbol(instrument_id),
                instrument_id=str(instrument_id),
                hint="the exchange does not list it: check SYMBOLS and NT_BINANCE_ACCOUNT",
            )
        self._instrument_ids = [i for i in self._instrument_ids if i not in missing]
        self.runtime.state.unavailable_symbols = [binance_symbol(i) for i in missing]
        if not self._instrument_ids:
            self.runtime.log.error(
                "fatal_error",
                reason="no_instrument_available",
                hint="no symbol of SYMBOLS is listed for NT_BINANCE_ACCOUNT: fix SYMBOLS; exiting 2",
            )
            self.runtime.fail_node("no_instrument_available")
            return
        # Connected and listed: now the node may join the fleet and take leases.
        self.runtime.publisher.set_available([binance_symbol(i) for i in self._instrument_ids])
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # the backtest engine: one thread, no event loop
            self._loop = None
        self._loop_thread = threading.get_ident()
        self.runtime.publisher.watch_target(self._target_changed)
        self.runtime.publisher.on_resubscribe(self._request_resubscribe)
        self._following = True
        self._follow_target()
        self.clock.set_timer(
            FAST_TIMER,
            _millis(self._config.report_period_ms),
            callback=self._on_loop_thread(self._on_fast_timer),
        )
        if self._config.slow_period_ms:
            self.clock.set_timer(
                SLOW_TIMER,
                _millis(self._config.slow_period_ms),
                callback=self._on_loop_thread(self._on_slow_timer),
            )

    def _target_changed(self, _symbols: list[str]) -> None:
        """Called on the publisher thread: follow the new target on the event-loop thread."""
        if self._loop is None:
            self._follow_target()
        else:
            self._loop.call_soon_threadsafe(self._follow_target)

    def _follow_target(self) -> None:
        """Subscribe market data for the symbols this node should own, and only those."""
        if not self._following:
            return
        target = set(self.runtime.publisher.target_symbols())
        for instrument_id in self._instrument_ids:
            followed = instrument_id.symbol.value in self._trackers
            wanted = binance_symbol(instrument_id) in target
            if wanted and not followed:
                self._follow(instrument_id)
            elif followed and not wanted:
                self._unfollow(instrument_id)

    def _request_resubscribe(self, symbol: str) -> bool:
        """Called on the publisher thread by a ``resubscribe`` command; False if not followed."""
        instrument_id = next((i for i in self._instrument_ids if binance_symbol(i) == symbol), None)
        if instrument_id is None or instrument_id.symbol.value not in self._trackers or self._loop is None:
            return False
        self._loop.call_soon_threadsafe(self._resubscribe, instrument_id)
        return True

    def _resubscribe(self, instrument_id: InstrumentId) -> None:
        """Have the data client renew the symbol's streams and rebuild its book from a snapshot."""
        if instrument_id.symbol.value not in self._trackers:  # released meanwhile
            return
        self.msgbus.publish(RESUBSCRIBE_TOPIC, instrument_id)
        self.runtime.metrics.ws_resubscribe.labels("control_command").inc()
        self.runtime.log.info(
            "ws_resubscribe",
            reason="control_command",
            symbol=binance_symbol(instrument_id),
            instrument_id=str(instrument_id),
        )

    def _follow(self, instrument_id: InstrumentId) -> None:
        symbol = binance_symbol(instrument_id)
        self._trackers[instrument_id.symbol.value] = SymbolTracker(
            symbol, self._config.book_depth, self._window_ms
        )
        self.msgbus.subscribe(book_status_topic(instrument_id), self._on_book_status)
        self.subscribe_order_book_deltas(instrument_id, BookType.L2_MBP, depth=0, managed=False)
        self.subscribe_trade_ticks(instrument_id)
        self.runtime.state.update_symbol(symbol, book_synced=False, data_age_ms=None)
        self.runtime.metrics.ws_resubscribe.labels("symbol_acquired").inc()
        self.runtime.log.info(
            "ws_resubscribe", reason="symbol_acquired", symbol=symbol, instrument_id=str(instrument_id)
        )

    def _unfollow(self, instrument_id: InstrumentId) -> None:
        tracker = self._trackers.pop(instrument_id.symbol.value)
        self.unsubscribe_order_book_deltas(instrument_id)
        self.unsubscribe_trade_ticks(instrument_id)
        self.msgbus.unsubscribe(book_status_topic(instrument_id), self._on_book_status)
        self.runtime.state.forget_symbol(tracker.symbol)
        self.runtime.metrics.book_synced.labels(tracker.symbol).set(0)
        self.runtime.log.info("market_data_unsubscribed", symbol=tracker.symbol)

    def _on_loop_thread(self, handler: Callable[[TimeEvent], None]) -> Callable[[TimeEvent], None]:
        """Run ``handler`` on the event-loop thread, where the market-data handlers run.

        NautilusTrader 1.221's live clock fires timer callbacks from its own runtime thread;
        reading the books there while a handler applies deltas would mix two book states.
        """

        def on_timer(event: TimeEvent) -> None:
            if self._loop is None or threading.get_ident() == self._loop_thread:
                handler(event)
            else:
                self._loop.call_soon_threadsafe(handler, event)

        return on_timer

    def on_stop(self) -> None:
        self._following = False
        self.runtime.publisher.hand_over()
        for name in (FAST_TIMER, SLOW_TIMER):
            if name in self.clock.timer_names:
                self.clock.cancel_timer(name)
        for instrument_id in self._instrument_ids:
            if instrument_id.symbol.value in self._trackers:
                self._unfollow(instrument_id)

    # -- market data ------------------------------------------------------------------------

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        tracker = self._trackers.get(deltas.instrument_id.symbol.value)
        if tracker is None:
            return
        symbol = tracker.symbol
        snapshot = False
        for delta in deltas.deltas:
            action = delta.action
            if action == BookAction.CLEAR:
                tracker.reset_book()
                snapshot = True
                continue
            order = delta.order
            quantity = 0.0 if action == BookAction.DELETE else _decimal_float(order.size)
            tracker.set_level(order.side == OrderSide.BUY, _decimal_float(order.price), quantity)
        tracker.book_applied(deltas.sequence, deltas.ts_event, deltas.ts_init, snapshot=snapshot)
        self.runtime.metrics.market_events.labels(symbol, "book").inc()
        if snapshot and tracker.synced:
            self.runtime.state.update_symbol(
                symbol, book_synced=True, snapshot_failures=0, rate_limited=False, snapshot_retry_ms=None
            )
            self.runtime.metrics.book_synced.labels(symbol).set(1)

    def on_trade_tick(self, tick: TradeTick) -> None:
        tracker = self._trackers.get(tick.instrument_id.symbol.value)
        if tracker is None:
            return
        tracker.trade(
            _decimal_float(tick.price),
            _decimal_float(tick.size),
            AGGRESSORS.get(tick.aggressor_side),
            tick.ts_event,
            tick.ts_init,
        )
        self.runtime.metrics.market_events.labels(tracker.symbol, "trade").inc()

    def _on_book_status(self, message: dict[str, Any]) -> None:
        tracker = self._trackers.get(message.get("instrument_symbol", ""))
        if tracker is None or message.get("synced"):
            return
        tracker.lose_sync(message.get("ts_ns", 0))
        self.runtime.state.update_symbol(tracker.symbol, book_synced=False)
        self.runtime.metrics.book_synced.labels(tracker.symbol).set(0)
        if message.get("reason") == "snapshot_failed":  # still resyncing: shown in /health
            fields = ("snapshot_failures", "rate_limited", "snapshot_retry_ms")
            self.runtime.state.update_symbol(tracker.symbol, **{f: message[f] for f in fields})

    # -- cycles -----------------------------------------------------------------------------

    def _on_fast_timer(self, event: TimeEvent) -> None:
        now_ns = self.clock.timestamp_ns()
        decision, lag_ms = decide(self._last_fast_ns, now_ns, self._config.report_period_ms)
        if decision is CycleDecision.SKIP:
            self.runtime.metrics.cycle_skips.labels("fast").inc()
            self.runtime.log.debug("fast_cycle_skip", reason="queued_behind_previous_run")
            return
        if decision is CycleDecision.RUN_LAGGING:
            self.runtime.log.warning(
                "fast_cycle_lag_detected", lag_ms=lag_ms, period_ms=self._config.report_period_ms
            )
        self._last_fast_ns = now_ns
        started = time.perf_counter()
        reports = {}
        for tracker in self._trackers.values():
            symbol = tracker.symbol
            report = tracker.fast_report(now_ns)
            self.runtime.state.update_symbol(symbol, data_age_ms=tracker.data_age_ms(now_ns))
            self._log_staleness(tracker, now_ns)
            if report is not None:
                report["ts_published_ms"] += self._config.clock_offset_ms
                reports[symbol] = report
            elif tracker.synced is False:
                self.runtime.metrics.report_dropped.labels(symbol, "book_not_synced").inc()
        self.runtime.metrics.calc_latency_ms.labels("fast").observe((time.perf_counter() - started) * 1000)
        if reports:
            self.runtime.publisher.submit(reports)

    def _log_staleness(self, tracker: SymbolTracker, now_ns: int) -> None:
        change = tracker.staleness_change(now_ns)
        if change == "stale":
            self.runtime.log.warning(
                "market_data_stale",
                symbol=tracker.symbol,
                data_age_ms=tracker.data_age_ms(now_ns),
                hint="no market data from the exchange: check ws_resubscribe events and the exchange",
            )
        elif change == "recovered":
            self.runtime.log.info(
                "market_data_recovered", symbol=tracker.symbol, data_age_ms=tracker.data_age_ms(now_ns)
            )

    def _on_slow_timer(self, event: TimeEvent) -> None:
        now_ns = self.clock.timestamp_ns()
        period_ms = self._config.slow_period_ms
        decision, lag_ms = decide(self._last_slow_ns, now_ns, period_ms)
        if decision is CycleDecision.SKIP:
            self.runtime.metrics.cycle_skips.labels("slow").inc()
            self.runtime.log.warning(
                "slow_cycle_skip", reason="queued_behind_previous_run", period_ms=period_ms
            )
            return
        if decision is CycleDecision.RUN_LAGGING:
            self.runtime.log.warning("slow_cycle_lag_detected", lag_ms=lag_ms, period_ms=period_ms)
        self._last_slow_ns = now_ns
        started = time.perf_counter()
        for tracker in self._trackers.values():
            tracker.slow_cycle(now_ns)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.runtime.metrics.calc_latency_ms.labels("slow").observe(elapsed_ms)
        if elapsed_ms > period_ms:
            self.runtime.log.warning(
                "slow_cycle_lag_detected", duration_ms=round(elapsed_ms, 1), period_ms=period_ms
            )


def _decimal_float(value: Price | Quantity) -> float:
    """The float nearest the exchange's decimal string (``as_double`` can be 1 ulp off)."""
    return round(value.as_double(), value.precision)


def _millis(ms: int) -> dt.timedelta:
    return dt.timedelta(milliseconds=ms)

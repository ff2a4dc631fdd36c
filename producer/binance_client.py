"""NautilusTrader's Binance data client, extended with diff-depth gap detection.

NautilusTrader 1.221 checks update ids only against the REST snapshot. This extension
checks every diff-depth event against the previous one (``ntplatform.sync``); on a gap
it tells the actor (message-bus topic ``book_status_topic(instrument_id)``), logs
``book_resync`` and rebuilds the book from a fresh snapshot, buffering the stream
meanwhile. Everything else (connections, parsing, instruments) is the stock client.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.futures.data import BinanceFuturesDataClient
from nautilus_trader.adapters.binance.spot.data import BinanceSpotDataClient
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.enums import LogColor
from nautilus_trader.model.data import OrderBookDeltas
from nautilus_trader.model.identifiers import InstrumentId

from ntplatform.backoff import is_rate_limited, requested_wait_s, snapshot_retry_delay_s, stuck
from ntplatform.logs import EventLog
from ntplatform.sync import DepthSequencer, Verdict
from producer.instruments import binance_symbol
from producer.metrics import ProducerMetrics


def book_status_topic(instrument_id: InstrumentId | str) -> str:
    """Message-bus topic on which the client announces that a book lost sync."""
    return f"ntplatform.book_status.{instrument_id}"


# A book rebuilt this recently (seconds) needs no rebuild for a reconnect: see _reconnect.
RECENT_REBUILD_S = 1.0

# Message-bus topic on which the actor asks the client to renew a symbol's streams
# (payload: the InstrumentId), for a signed ``resubscribe`` control command.
RESUBSCRIBE_TOPIC = "ntplatform.resubscribe"


class _Observability:
    """Where the extended client reports: set once by the node builder."""

    metrics: ProducerMetrics | None = None
    log: EventLog = EventLog("producer")
    connect_error: str | None = None  # why the last connection attempt failed


observability = _Observability()


class SequencedBookMixin:
    """Gap detection and resynchronisation for a ``BinanceCommonDataClient`` subclass."""

    if TYPE_CHECKING:  # provided by BinanceCommonDataClient
        _binance_account_type: BinanceAccountType
        _book_depths: dict[InstrumentId, int | None]
        _ws_client: Any
        _decoder_order_book_msg: Any
        _http_market: Any
        _clock: LiveClock
        _msgbus: MessageBus

        def _get_cached_instrument_id(self, symbol: str) -> InstrumentId: ...
        def _handle_data(self, data: Any) -> None: ...
        def create_task(
            self,
            coro: Coroutine,
            log_msg: str | None = None,
            actions: Callable | None = None,
            success_msg: str | None = None,
            success_color: LogColor = LogColor.NORMAL,
        ) -> asyncio.Task: ...

    async def _connect(self) -> None:
        try:
            await super()._connect()  # type: ignore[misc]
        except Exception as error:  # recorded for the operator, then handled by NautilusTrader
            observability.connect_error = f"{type(error).__name__}: {error}"
            observability.log.error("exchange_connect_failed", error=observability.connect_error)
            raise

    def _init_sequencing(self) -> None:
        self._sequencers: dict[InstrumentId, DepthSequencer] = {}
        self._pending: dict[InstrumentId, list[tuple[Any, OrderBookDeltas]]] = {}
        self._resync_tasks: dict[InstrumentId, asyncio.Task] = {}
        self._rebuild_started: dict[InstrumentId, float] = {}  # time.monotonic() of the last rebuild
        self._msgbus.subscribe(RESUBSCRIBE_TOPIC, self._on_resubscribe_request)

    def _on_resubscribe_request(self, instrument_id: InstrumentId) -> None:
        if instrument_id in self._book_depths:
            self.create_task(self._renew_streams(instrument_id))

    async def _renew_streams(self, instrument_id: InstrumentId) -> None:
        """UNSUBSCRIBE and SUBSCRIBE the symbol's streams on their connection, then resync the book.

        Done on the WebSocket directly: going through NautilusTrader's unsubscribe would close
        a connection left without streams and race the new subscription.
        """
        ws = self._ws_client
        prefix = f"{binance_symbol(instrument_id).lower()}@"
        by_connection: dict[int, list[str]] = {}
        for stream in [s for s in ws._streams if s.startswith(prefix)]:
            by_connection.setdefault(ws._get_client_for_stream(stream), []).append(stream)
        for connection, streams in by_connection.items():
            if connection == -1:
                continue
            await ws._send(connection, ws._create_unsubscribe_msg(streams=streams))
            await ws._send(connection, ws._create_subscribe_msg(streams=streams))
        self._start_resync(instrument_id, "control_command")

    def _sequencer(self, instrument_id: InstrumentId) -> DepthSequencer:
        sequencer = self._sequencers.get(instrument_id)
        if sequencer is None:
            futures = self._binance_account_type.is_futures
            sequencer = DepthSequencer(futures=futures)
            self._sequencers[instrument_id] = sequencer
        return sequencer

    def _handle_book_diff_update(self, raw: bytes) -> None:
        msg = self._decoder_order_book_msg.decode(raw)
        instrument_id = self._get_cached_instrument_id(msg.data.s)
        deltas = msg.data.parse_to_order_book_deltas(
            instrument_id=instrument_id,
            ts_init=self._clock.timestamp_ns(),
        )
        buffer = self._pending.get(instrument_id)
        if buffer is not None:
            buffer.append((msg.data, deltas))
            return
        self._apply_sequenced(instrument_id, msg.data, deltas)

    def _apply_sequenced(self, instrument_id: InstrumentId, data: Any, deltas: OrderBookDeltas) -> None:
        sequencer = self._sequencer(instrument_id)
        if not sequencer.synced:
            return  # before the first snapshot: the snapshot will cover this event
        verdict = sequencer.check(data.U, data.u, data.pu)
        if verdict is Verdict.APPLY:
            self._handle_data(deltas)
        elif verdict is Verdict.GAP:
            self._start_resync(
                instrument_id,
                "sequence_gap",
                expected_after=sequencer.last_update_id,
                first_id=data.U,
                final_id=data.u,
            )
            # Buffered: the next snapshot must reach it (a lagging snapshot older than the
            # stream already seen is refused), and it may straddle the snapshot.
            self._pending[instrument_id].append((data, deltas))

    def _rebuilding(self, instrument_id: InstrumentId) -> bool:
        """Whether the book waits for a snapshot that is yet to be requested or answered."""
        return instrument_id in self._pending and not self._sequencer(instrument_id).synced

    def _start_resync(self, instrument_id: InstrumentId, reason: str, **detail: Any) -> None:
        """Rebuild the book from a fresh snapshot, buffering the stream meanwhile.

        A cause that arrives while a rebuild waits for its snapshot joins that rebuild: the
        snapshot still to come covers it, so it is logged but not counted again.
        """
        joined = self._rebuilding(instrument_id)
        self._sequencer(instrument_id).reset()
        self._pending.setdefault(instrument_id, [])
        self._rebuild_started[instrument_id] = time.monotonic()
        self._publish_book_status(instrument_id, reason)
        symbol = binance_symbol(instrument_id)
        if joined:
            observability.log.info("book_resync", symbol=symbol, reason=reason, joined=True, **detail)
        else:
            observability.log.warning("book_resync", symbol=symbol, reason=reason, **detail)
            if observability.metrics is not None:
                observability.metrics.ws_resubscribe.labels("resync").inc()
                observability.metrics.book_resyncs.labels(symbol, reason).inc()
        if instrument_id not in self._resync_tasks:
            task = self.create_task(self._order_book_snapshot_then_deltas(instrument_id))
            self._resync_tasks[instrument_id] = task

    def _publish_book_status(self, instrument_id: InstrumentId, reason: str, **detail: Any) -> None:
        """Tell the actor the book is not synced, and why (``detail``: a failed snapshot's).

        This arrives at once, while snapshots reach the actor later through the data engine's
        queue: ``ts_ns`` lets it tell a snapshot taken before this status from a newer one.
        """
        status = {
            "instrument_symbol": instrument_id.symbol.value,
            "synced": False,
            "reason": reason,
            "ts_ns": self._clock.timestamp_ns(),
        }
        self._msgbus.publish(book_status_topic(instrument_id), {**status, **detail})

    async def _order_book_snapshot_then_deltas(self, instrument_id: InstrumentId) -> None:
        self._pending.setdefault(instrument_id, [])
        attempt, rate_limited, told = 0, 0, False
        try:
            # Retry until it works or the symbol is unsubscribed; ntplatform.backoff says how long
            # to wait: up to 5 s, and longer while the exchange rate-limits us.
            while instrument_id in self._book_depths:
                outcome = await self._snapshot_once(instrument_id, attempt)
                if outcome is None:
                    return
                limited, requested = outcome
                rate_limited = rate_limited + 1 if limited else 0
                delay = snapshot_retry_delay_s(attempt, rate_limited, requested)
                self._publish_book_status(
                    instrument_id,
                    "snapshot_failed",
                    snapshot_failures=attempt + 1,
                    rate_limited=limited,
                    snapshot_retry_ms=self._clock.timestamp_ms() + round(delay * 1000),
                )
                if stuck(attempt, delay) and not told:
                    told = True
                    observability.log.error(
                        "book_resync_failed",
                        symbol=binance_symbol(instrument_id),
                        attempts=attempt + 1,
                        rate_limited=limited,
                        retry_in_s=delay,
                        hint="still retrying; check the exchange's REST API (rate limits: 429/418, outage)",
                    )
                await asyncio.sleep(delay)
                attempt += 1
            self._pending.pop(instrument_id, None)
        finally:
            self._resync_tasks.pop(instrument_id, None)

    async def _snapshot_once(
        self, instrument_id: InstrumentId, attempt: int
    ) -> tuple[bool, float | None] | None:
        """Fetch a snapshot and replay the buffered stream onto it.

        None when the book is synced. After a failure (including a snapshot the buffered stream
        does not continue from), whether the exchange rate-limited us and how long it asked us
        to wait (None: it did not say).
        """
        depth = self._book_depths[instrument_id]
        try:
            snapshot_msg = await self._http_market.query_depth(instrument_id.symbol.value, depth)
        except Exception as error:  # the HTTP layer raises several unrelated types
            status, message = getattr(error, "status", None), getattr(error, "message", None)
            limited = is_rate_limited(status, message)
            requested = (
                requested_wait_s(getattr(error, "headers", None), message, self._clock.timestamp_ms())
                if limited
                else None
            )
            kind = "rate_limited" if limited else "error"
            _snapshot_failed(
                instrument_id, kind, attempt, str(error), status=status, requested_wait_s=requested
            )
            return limited, requested
        snapshot = snapshot_msg.parse_to_order_book_snapshot(
            instrument_id=instrument_id,
            ts_init=self._clock.timestamp_ns(),
        )
        # Nothing reaches the book until the buffered stream is known to continue from the
        # snapshot: a snapshot it cannot be joined to is a failed attempt, like an HTTP error.
        sequencer = self._sequencer(instrument_id)
        snapshot_id, high_water = snapshot_msg.lastUpdateId, sequencer.high_water
        behind = sequencer.behind(snapshot_id)
        sequencer.on_snapshot(snapshot_id)
        buffered = self._pending.get(instrument_id, [])
        joined = []
        for data, deltas in buffered:
            verdict = sequencer.check(data.U, data.u, data.pu)
            if verdict is Verdict.GAP:
                return self._snapshot_not_joined(instrument_id, attempt, snapshot_id, data)
            if verdict is Verdict.APPLY:
                joined.append(deltas)
        if behind and not joined:
            # Nothing buffered reaches back to it: it is older than the book already shown
            # (a buffered event that straddles it would mean the exchange's ids started over).
            sequencer.reset()
            reason = f"snapshot lastUpdateId {snapshot_id} is behind the book already built ({high_water})"
            _snapshot_failed(instrument_id, "behind_stream", attempt, reason, snapshot_update_id=snapshot_id)
            return False, None
        self._handle_data(snapshot)
        for deltas in joined:
            self._handle_data(deltas)
        self._pending.pop(instrument_id, None)
        observability.log.info(
            "book_synced",
            symbol=binance_symbol(instrument_id),
            update_id=sequencer.last_update_id,
            attempt=attempt + 1,
        )
        return None

    def _snapshot_not_joined(
        self, instrument_id: InstrumentId, attempt: int, snapshot_id: int, data: Any
    ) -> tuple[bool, None]:
        """Log a snapshot the buffered stream does not continue from; the buffer is kept."""
        sequencer = self._sequencer(instrument_id)
        expected_after = sequencer.last_update_id
        sequencer.reset()
        if expected_after == snapshot_id:
            kind = "behind_stream"
            error = (
                f"snapshot lastUpdateId {snapshot_id} is behind the stream (buffered events from {data.U})"
            )
        else:
            kind = "buffer_gap"
            error = f"buffered stream misses events after {expected_after} (next from {data.U})"
        _snapshot_failed(instrument_id, kind, attempt, error, snapshot_update_id=snapshot_id, first_id=data.U)
        return False, None

    async def _unsubscribe_order_book_deltas(self, command: Any) -> None:
        """Stop the diff-depth stream (NautilusTrader 1.221 leaves it running) and forget the book."""
        instrument_id = command.instrument_id
        if self._book_depths.pop(instrument_id, None) is None:
            return
        speed = 0 if self._binance_account_type.is_futures else 100
        await self._ws_client.unsubscribe_diff_book_depth(instrument_id.symbol.value, speed)
        self._sequencer(instrument_id).reset()
        self._pending.pop(instrument_id, None)

    async def _reconnect(self) -> None:
        """Rebuild every followed book but those a rebuild already covers.

        The new connection's first events can arrive before NautilusTrader calls this, so a
        book may already be rebuilding (or just rebuilt) for the gap they showed. Should one
        of those still miss events, the sequencer sees the gap.
        """
        now = time.monotonic()
        covered = [
            i
            for i in self._book_depths
            if self._rebuilding(i) or now - self._rebuild_started.get(i, -math.inf) < RECENT_REBUILD_S
        ]
        observability.log.warning(
            "ws_resubscribe",
            reason="reconnect",
            symbols=[binance_symbol(i) for i in self._book_depths],
            already_rebuilding=[binance_symbol(i) for i in covered],
        )
        if observability.metrics is not None:
            observability.metrics.ws_resubscribe.labels("reconnect").inc()
        for instrument_id in [i for i in self._book_depths if i not in covered]:
            self._start_resync(instrument_id, "reconnect")


def _snapshot_failed(instrument_id: InstrumentId, kind: str, attempt: int, error: str, **detail: Any) -> None:
    """Count and log one failed snapshot attempt; ``kind`` is the metric's label."""
    if observability.metrics is not None:
        observability.metrics.book_snapshot_failures.labels(binance_symbol(instrument_id), kind).inc()
    fields = {"status": None, "requested_wait_s": None, **detail}
    observability.log.warning(
        "book_snapshot_failed",
        symbol=binance_symbol(instrument_id),
        attempt=attempt + 1,
        error=error,
        rate_limited=kind == "rate_limited",
        **fields,
    )


class SequencedSpotDataClient(SequencedBookMixin, BinanceSpotDataClient):
    """Binance spot data client with gap detection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_sequencing()


class SequencedFuturesDataClient(SequencedBookMixin, BinanceFuturesDataClient):
    """Binance USDⓈ-M futures data client with gap detection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_sequencing()

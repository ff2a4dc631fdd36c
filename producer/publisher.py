"""The node's Redis thread: coordination, leases and report writes.

The actor hands over each cycle's reports with ``submit``; this thread writes them in
one pipeline through the fenced-write script. If Redis is slow or away, only the newest
report per symbol is kept (older ones are counted as dropped), so market-data handling
never waits on Redis. While Redis is unreachable the thread retries with exponential
backoff (0.5 s up to 5 s) and logs ``redis_unavailable`` each attempt; on return it logs
``redis_recovered``, rejoins the fleet and re-acquires its leases (new fencing tokens).

The node joins the fleet (heartbeat, leases) only once the actor has started, that is once
NautilusTrader's exchange client has connected and loaded the instruments (``set_available``):
a node that cannot reach the exchange must not take symbols it could never publish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from ntplatform.coordination.leases import WriteStatus
from ntplatform.logs import EventLog
from ntplatform.settings import Settings, redact_url
from producer.coordinator import Coordinator
from producer.health import NodeState
from producer.leases import LeaseKeeper
from producer.metrics import ProducerMetrics

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 5.0
IDLE_WAKE_S = 0.1  # how often the thread looks at heartbeats, peers and leases when idle


class ReportPublisher:
    """Owns the Redis connection and everything this node does through it."""

    def __init__(
        self,
        settings: Settings,
        metrics: ProducerMetrics,
        state: NodeState,
        log: EventLog,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._state = state
        self._log = log
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self.leases = LeaseKeeper(self._client, settings, metrics, log)
        self.coordinator = Coordinator(self._client, settings, metrics, state, log, self._wall_ms)
        self.coordinator.observe_token = self.leases.observe
        self.coordinator.observe_seq = self.leases.observe_seq
        self._available: set[str] | None = None  # None: not ready to join the fleet yet
        self._joined = False  # heartbeating under this Redis connection
        self._pending: dict[str, dict[str, Any]] = {}
        self._wake = threading.Condition()
        self._stop_requested = threading.Event()
        self._stopping = False
        self._handing_over = False
        self._left = False
        self._connected = False
        self._attempt = 0
        self._thread = threading.Thread(target=self._run, name="report-publisher", daemon=True)

    # -- called from other threads ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, reports: dict[str, dict[str, Any]]) -> None:
        """Queue one cycle's reports (symbol -> report without writer fields)."""
        with self._wake:
            for symbol in reports:
                if symbol in self._pending:
                    self._metrics.report_dropped.labels(symbol, "superseded").inc()
            self._pending.update(reports)
            self._wake.notify()

    def set_available(self, symbols: list[str]) -> None:
        """Join the fleet and compete for these symbols' leases (those the exchange actually lists)."""
        with self._wake:
            self._available = set(symbols)
            self._wake.notify()

    def target_symbols(self) -> list[str]:
        """The symbols this node should follow now (owned, or about to be)."""
        return sorted(self.coordinator.target & (self._available or set()))

    def owned_symbols(self) -> list[str]:
        return self.leases.held()

    def watch_target(self, callback: Callable[[list[str]], None]) -> None:
        """``callback(symbols)`` on the publisher thread whenever this node's share changes."""
        self.coordinator.on_target = callback

    def on_resubscribe(self, callback: Callable[[str], bool]) -> None:
        """``callback(symbol)`` on the publisher thread for each accepted ``resubscribe`` command."""
        self.coordinator.control.resubscribe = callback

    def hand_over(self) -> None:
        """Stop writing, release every lease and leave the fleet now, so peers take over."""
        with self._wake:
            self._handing_over = True
            self._wake.notify()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Hand over (if not done yet), stop the thread and close the connection."""
        with self._wake:
            self._handing_over = True
            self._stopping = True
            self._wake.notify()
        self._stop_requested.set()
        self._thread.join(timeout_s)
        self._client.close()

    # -- publisher thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._pending and not self._stopping:
                    self._wake.wait(timeout=IDLE_WAKE_S)
                batch, self._pending = self._pending, {}
                stopping = self._stopping
            try:
                self._cycle(batch)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                self._on_disconnected(error, batch)
            except redis.RedisError as error:
                self._metrics.redis_errors.labels("command").inc()
                self._log.error("redis_command_failed", error=str(error))
                self._count_dropped(batch, "redis_error")
            if stopping:
                return

    def _cycle(self, batch: dict[str, dict[str, Any]]) -> None:
        if self._handing_over:
            self._leave(batch)
            return
        if not self._connected:
            self._reconnect()
        available = self._available
        if available is None:  # the exchange client is not connected yet: not a member
            self._count_dropped(batch, "no_lease")
            return
        if not self._joined:
            self.coordinator.connected()
            self._joined = True
        self.coordinator.tick(self.leases.tokens, self.leases.acquired_at, self.leases.seq)
        self._follow_target(available)
        self._write_batch(batch)

    def _leave(self, batch: dict[str, dict[str, Any]]) -> None:
        self._count_dropped(batch, "shutting_down")
        if self._left or not self._connected or not self._joined:
            return
        for symbol in self.leases.held():
            self.leases.release(symbol, "shutdown")
        self.coordinator.leave()
        self._state.set_owned([])
        self._left = True

    def _follow_target(self, available: set[str]) -> None:
        wanted = self.coordinator.target & available
        for symbol in sorted(set(self.leases.held()) - wanted):
            self.leases.release(symbol, "rebalanced")
        for symbol in sorted(wanted - set(self.leases.held())):
            self.leases.try_acquire(symbol)
        self.leases.renew_due()
        held = self.leases.held()
        self._state.set_owned(held)
        self._metrics.symbols_assigned.labels(self._settings.node_id).set(len(held))

    def _reconnect(self) -> None:
        self._client.ping()
        url = redact_url(self._settings.redis_url)
        if self._attempt:
            self._log.info("redis_recovered", redis_url=url, attempts=self._attempt)
        else:
            self._log.info("redis_connected", redis_url=url)
        self._attempt = 0
        self._connected = True
        self._state.redis_connected = True
        self._metrics.redis_connected.set(1)
        self.leases.forget_all()
        self._joined = False  # rejoin on this connection

    def _on_disconnected(self, error: Exception, batch: dict[str, dict[str, Any]]) -> None:
        self._connected = False
        self._state.redis_connected = False
        self._metrics.redis_connected.set(0)
        self._metrics.redis_errors.labels("connect").inc()
        self.coordinator.heartbeat_failed()
        self._count_dropped(batch, "redis_unavailable")
        self._attempt += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (self._attempt - 1))
        self._log.warning(
            "redis_unavailable",
            redis_url=redact_url(self._settings.redis_url),
            error=str(error),
            attempt=self._attempt,
            retry_in_s=delay,
        )
        # Not self._wake: every submitted report notifies it and would cut the backoff short.
        self._stop_requested.wait(timeout=delay)

    def _count_dropped(self, batch: dict[str, dict[str, Any]], reason: str) -> None:
        for symbol in batch:
            self._metrics.report_dropped.labels(symbol, reason).inc()

    # -- writes -----------------------------------------------------------------------------

    def _write_batch(self, batch: dict[str, dict[str, Any]]) -> None:
        tokens = self.leases.tokens
        for symbol in batch.keys() - tokens.keys():
            self._metrics.report_dropped.labels(symbol, "no_lease").inc()
        writable = [(s, r) for s, r in batch.items() if s in tokens]
        if not writable:
            return
        pipe = self._client.pipeline(transaction=False)
        sent = []
        for symbol, report in writable:
            seq = self.leases.seq[symbol] + 1
            report["node_id"] = self._settings.node_id
            report["fencing_token"] = tokens[symbol]
            report["seq"] = seq
            self.leases.write_script(**self.leases.write_args(symbol, orjson.dumps(report)), client=pipe)
            sent.append((symbol, seq, report))
        results = pipe.execute()
        now_ms = self._wall_ms()
        for (symbol, seq, report), result in zip(sent, results, strict=True):
            status = WriteStatus(int(result))
            if status is WriteStatus.OK:
                self.leases.seq[symbol] = seq
                self._metrics.report_publish.labels(symbol).inc()
                self._metrics.data_age_ms.labels(symbol).observe(report["data_age_ms"])
                self._state.update_symbol(
                    symbol, last_publish_ms=now_ms, last_publish_monotonic=time.monotonic()
                )
            else:
                self._metrics.report_dropped.labels(symbol, "lease_lost").inc()
                self.leases.lose(symbol, status)

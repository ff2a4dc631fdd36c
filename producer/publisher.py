"""Writes reports to Redis from a background thread, through fenced writer leases.

The actor hands over each cycle's reports with ``submit``; this thread writes them in
one pipeline. If Redis is slow or away, only the newest report per symbol is kept
(older ones are counted as dropped), so market data handling never waits on Redis.
While Redis is unreachable the thread retries with exponential backoff (0.5 s up to
5 s) and logs ``redis_unavailable`` each attempt; on return it logs
``redis_recovered`` and re-acquires its leases (new fencing tokens).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import redis

from ntplatform import keys
from ntplatform.coordination import leases
from ntplatform.coordination.leases import WriteStatus
from ntplatform.logs import EventLog
from ntplatform.settings import Settings, redact_url
from producer.health import NodeState
from producer.metrics import ProducerMetrics

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 5.0


class ReportPublisher:
    """Owns the Redis connection, this node's leases and the report writes."""

    def __init__(self, settings: Settings, metrics: ProducerMetrics, state: NodeState, log: EventLog) -> None:
        self._settings = settings
        self._metrics = metrics
        self._state = state
        self._log = log
        self._client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._acquire = self._client.register_script(leases.ACQUIRE)
        self._renew = self._client.register_script(leases.RENEW)
        self._release = self._client.register_script(leases.RELEASE)
        self._write = self._client.register_script(leases.FENCED_WRITE)
        # Until rendezvous ownership lands, every node wants every symbol; the fenced
        # writes still guarantee a single writer per symbol.
        self._wanted: set[str] = set(settings.symbols)
        self._tokens: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._connected = False
        self._attempt = 0
        self._renew_every_s = settings.lease_ttl_ms / 3000
        self._next_renew = 0.0
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

    def set_symbols(self, symbols: list[str]) -> None:
        """Compete only for these symbols' leases (those the exchange actually lists)."""
        with self._wake:
            self._wanted = set(symbols)

    def owned_symbols(self) -> list[str]:
        return sorted(self._tokens)

    def stop(self, timeout_s: float = 3.0) -> None:
        """Write what is pending, release the leases and close the connection."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout_s)
        try:
            if self._connected:
                self._release_all()
        except redis.RedisError as error:
            self._log.warning("lease_release_failed", error=str(error))
        self._client.close()

    # -- publisher thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._pending and not self._stopping:
                    self._wake.wait(timeout=self._renew_every_s / 2)
                batch, self._pending = self._pending, {}
                stopping = self._stopping
            try:
                self._cycle(batch)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                self._on_disconnected(error, batch)
            except redis.RedisError as error:
                self._metrics.redis_errors.labels("write").inc()
                self._log.error("redis_command_failed", error=str(error))
                self._count_dropped(batch, "redis_error")
            if stopping:
                return

    def _cycle(self, batch: dict[str, dict[str, Any]]) -> None:
        if not self._connected:
            self._reconnect()
        self._ensure_leases()
        self._write_batch(batch)

    def _reconnect(self) -> None:
        self._client.ping()
        if self._attempt:
            self._log.info(
                "redis_recovered", redis_url=redact_url(self._settings.redis_url), attempts=self._attempt
            )
        else:
            self._log.info("redis_connected", redis_url=redact_url(self._settings.redis_url))
        self._attempt = 0
        self._connected = True
        self._state.redis_connected = True
        self._metrics.redis_connected.set(1)
        self._tokens.clear()  # tokens from before an outage cannot be trusted

    def _on_disconnected(self, error: Exception, batch: dict[str, dict[str, Any]]) -> None:
        self._connected = False
        self._state.redis_connected = False
        self._metrics.redis_connected.set(0)
        self._metrics.redis_errors.labels("connect").inc()
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
        with self._wake:
            if not self._stopping:
                self._wake.wait(timeout=delay)

    def _count_dropped(self, batch: dict[str, dict[str, Any]], reason: str) -> None:
        for symbol in batch:
            self._metrics.report_dropped.labels(symbol, reason).inc()

    # -- leases -----------------------------------------------------------------------------

    def _ensure_leases(self) -> None:
        now = time.monotonic()
        for symbol in sorted(self._tokens.keys() - self._wanted):
            self._release_one(symbol)
        missing = self._wanted - self._tokens.keys()
        for symbol in sorted(missing):
            self._try_acquire(symbol)
        if now >= self._next_renew:
            self._next_renew = now + self._renew_every_s
            for symbol in sorted(self._tokens):
                self._renew_one(symbol)
        self._state.set_owned(list(self._tokens))
        self._metrics.symbols_assigned.labels(self._settings.node_id).set(len(self._tokens))

    def _try_acquire(self, symbol: str) -> None:
        node = self._settings.node_id
        token = int(
            self._acquire(
                keys=[keys.writer_key(symbol), keys.token_key(symbol)],
                args=[node, self._settings.lease_ttl_ms],
            )
        )
        if not token:
            return
        self._tokens[symbol] = token
        self._seq[symbol] = self._last_seq(symbol)
        self._log.info("lease_acquired", symbol=symbol, fencing_token=token)

    def _last_seq(self, symbol: str) -> int:
        """Continue the symbol's ``seq`` from the last report any writer left."""
        raw = self._client.get(keys.report_key(symbol))
        if raw is None:
            return 0
        try:
            return int(orjson.loads(raw).get("seq", 0))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return 0

    def _renew_one(self, symbol: str) -> None:
        token = self._tokens[symbol]
        status = WriteStatus(
            int(
                self._renew(
                    keys=[keys.writer_key(symbol), keys.token_key(symbol)],
                    args=[self._settings.node_id, token, self._settings.lease_ttl_ms],
                )
            )
        )
        if status is not WriteStatus.OK:
            self._lose(symbol, status)

    def _lose(self, symbol: str, status: WriteStatus) -> None:
        token = self._tokens.pop(symbol, None)
        if status.is_conflict:
            self._metrics.lease_conflicts.labels(symbol).inc()
            self._log.warning(
                "lease_conflict",
                symbol=symbol,
                reason="fencing_token_mismatch",
                fencing_token=token,
                detail=status.name.lower(),
            )
        else:
            self._log.warning("lease_expired", symbol=symbol, fencing_token=token)

    def _release_all(self) -> None:
        for symbol in sorted(self._tokens):
            self._release_one(symbol)

    def _release_one(self, symbol: str) -> None:
        token = self._tokens.pop(symbol)
        self._release(
            keys=[keys.writer_key(symbol), keys.token_key(symbol)], args=[self._settings.node_id, token]
        )
        self._log.info("lease_released", symbol=symbol, fencing_token=token)

    # -- writes -----------------------------------------------------------------------------

    def _write_batch(self, batch: dict[str, dict[str, Any]]) -> None:
        writable = [(s, r) for s, r in batch.items() if s in self._tokens]
        for symbol in batch.keys() - self._tokens.keys():
            self._metrics.report_dropped.labels(symbol, "no_lease").inc()
        if not writable:
            return
        pipe = self._client.pipeline(transaction=False)
        payloads = []
        for symbol, report in writable:
            token = self._tokens[symbol]
            seq = self._seq[symbol] + 1
            report["node_id"] = self._settings.node_id
            report["fencing_token"] = token
            report["seq"] = seq
            payload = orjson.dumps(report)
            payloads.append((symbol, seq, report))
            self._write(
                keys=[
                    keys.writer_key(symbol),
                    keys.token_key(symbol),
                    keys.report_key(symbol),
                    keys.stream_key(symbol),
                ],
                args=[
                    self._settings.node_id,
                    token,
                    payload,
                    self._settings.stream_maxlen,
                    int(self._settings.enable_kv_reports),
                    int(self._settings.enable_streams),
                ],
                client=pipe,
            )
        results = pipe.execute()
        now_ms = int(time.time() * 1000)
        for (symbol, seq, report), result in zip(payloads, results, strict=True):
            status = WriteStatus(int(result))
            if status is WriteStatus.OK:
                self._seq[symbol] = seq
                self._metrics.report_publish.labels(symbol).inc()
                self._metrics.data_age_ms.labels(symbol).observe(report["data_age_ms"])
                self._state.update_symbol(symbol, last_publish_ms=now_ms)
            else:
                self._metrics.report_dropped.labels(symbol, "lease_lost").inc()
                self._lose(symbol, status)

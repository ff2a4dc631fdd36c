"""This node's writer leases in Redis: acquire, renew, release, and the fenced write.

All calls run on the publisher thread. Lease timing is Redis's (key TTLs); the node's
own clock only decides *when* to renew (every third of the TTL, monotonic time).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from ntplatform import keys
from ntplatform.coordination import leases
from ntplatform.coordination.leases import WriteStatus
from ntplatform.logs import EventLog
from ntplatform.settings import Settings
from producer.metrics import ProducerMetrics


class LeaseKeeper:
    """Tokens of the leases this node holds, and the scripts that check them."""

    def __init__(
        self, client: redis.Redis, settings: Settings, metrics: ProducerMetrics, log: EventLog
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._log = log
        self._client = client
        self._acquire = client.register_script(leases.ACQUIRE)
        self._renew = client.register_script(leases.RENEW)
        self._release = client.register_script(leases.RELEASE)
        self.write_script = client.register_script(leases.FENCED_WRITE)
        self.tokens: dict[str, int] = {}
        self.seq: dict[str, int] = {}
        self.acquired_at: dict[str, float] = {}  # monotonic seconds
        self._highest_token: dict[str, int] = {}
        self._highest_seq: dict[str, int] = {}  # report seqs seen in peers' heartbeats
        self._next_renew = 0.0

    def held(self) -> list[str]:
        return sorted(self.tokens)

    def forget_all(self) -> None:
        """After losing Redis we cannot know which leases survived: re-acquire them all."""
        self.tokens.clear()

    def observe(self, symbol: str, token: int) -> None:
        """Remember a token seen elsewhere (a peer's heartbeat) as a floor for ours."""
        if token > self._highest_token.get(symbol, 0):
            self._highest_token[symbol] = token

    def observe_seq(self, symbol: str, seq: int) -> None:
        """Remember a report seq seen elsewhere (a peer's heartbeat) as a floor for ours."""
        if seq > self._highest_seq.get(symbol, 0):
            self._highest_seq[symbol] = seq

    def try_acquire(self, symbol: str) -> bool:
        token = int(
            self._acquire(
                keys=[keys.writer_key(symbol), keys.token_key(symbol)],
                args=[
                    self._settings.node_id,
                    self._settings.lease_ttl_ms,
                    self._highest_token.get(symbol, 0),
                ],
            )
        )
        if not token:
            return False
        self.tokens[symbol] = token
        self._highest_token[symbol] = token
        self.acquired_at[symbol] = time.monotonic()
        # Redis's last report, else what this node wrote or saw a peer write: after Redis lost
        # its data seq goes on rising, and the archive can still count holes by it.
        floors = (self._last_seq(symbol), self.seq.get(symbol, 0), self._highest_seq.get(symbol, 0))
        self.seq[symbol] = max(floors)
        self._log.info("symbol_acquired", symbol=symbol, fencing_token=token)
        return True

    def _last_seq(self, symbol: str) -> int:
        """The ``seq`` of the last report any writer left: ``report:{SYMBOL}``, else its stream's newest."""
        raw = self._client.get(keys.report_key(symbol))
        if raw is None:  # NT_ENABLE_KV_REPORTS=0: the stream has it
            newest = self._client.xrevrange(keys.stream_key(symbol), count=1)
            raw = (newest[0][1] or {}).get(keys.REPORT_FIELD.encode()) if newest else None
        if raw is None:
            return 0
        try:
            return int(orjson.loads(raw).get("seq", 0))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return 0

    def renew_due(self) -> None:
        """Renew every held lease once a third of the TTL has passed since the last renewal."""
        now = time.monotonic()
        if now < self._next_renew:
            return
        self._next_renew = now + self._settings.lease_ttl_ms / 3000
        for symbol in self.held():
            status = WriteStatus(
                int(
                    self._renew(
                        keys=[keys.writer_key(symbol), keys.token_key(symbol)],
                        args=[self._settings.node_id, self.tokens[symbol], self._settings.lease_ttl_ms],
                    )
                )
            )
            if status is not WriteStatus.OK:
                self.lose(symbol, status)

    def lose(self, symbol: str, status: WriteStatus) -> None:
        """Give up a symbol whose lease check failed."""
        token = self.tokens.pop(symbol, None)
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
        self._log.info("symbol_released", symbol=symbol, reason=status.name.lower(), fencing_token=token)

    def release(self, symbol: str, reason: str) -> None:
        token = self.tokens.pop(symbol)
        self._release(
            keys=[keys.writer_key(symbol), keys.token_key(symbol)], args=[self._settings.node_id, token]
        )
        self._log.info("symbol_released", symbol=symbol, reason=reason, fencing_token=token)

    def write_args(self, symbol: str, payload: bytes) -> dict[str, Any]:
        """Keys and arguments of the fenced write of one report."""
        s = self._settings
        return {
            "keys": [
                keys.writer_key(symbol),
                keys.token_key(symbol),
                keys.report_key(symbol),
                keys.stream_key(symbol),
            ],
            "args": [
                s.node_id,
                self.tokens[symbol],
                payload,
                s.stream_maxlen,
                int(s.enable_kv_reports),
                int(s.enable_streams),
            ],
        }

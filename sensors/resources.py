"""``FleetResource``: one read of the fleet's state from Redis, for the sensors and their jobs.

No ``from __future__ import annotations``: Dagster reads the field annotations at runtime.
"""

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import dagster as dg
import pydantic
import redis

from assets.resources import RedisResource
from ntplatform import keys
from ntplatform.diagnosis import MAX_CLOCK_SKEW_MS, Diagnosis, FleetSnapshot, WriterLease, diagnose


class FleetResource(dg.ConfigurableResource):
    """The producer fleet as Redis shows it: heartbeats ``nt:node:*`` and writers ``report:writer:*``."""

    redis: RedisResource
    symbols: list[str] = pydantic.Field(default_factory=list)  # configured symbols (SYMBOLS)
    expected_nodes: list[str] = pydantic.Field(default_factory=list)  # nodes that must be live
    max_clock_skew_ms: int = MAX_CLOCK_SKEW_MS

    def snapshot(self) -> FleetSnapshot:
        client = self.redis.client()
        started = time.perf_counter()
        seconds, micros = client.time()
        latency_ms = (time.perf_counter() - started) * 1000
        heartbeats, node_pttl = _read_heartbeats(client)
        return FleetSnapshot(
            redis_time_ms=int(seconds) * 1000 + int(micros) // 1000,
            heartbeats=heartbeats,
            heartbeat_pttl_ms=node_pttl,
            leases=_read_leases(client),
            symbols=tuple(s.strip().upper() for s in self.symbols if s.strip()),
            read_latency_ms=round(latency_ms, 3),
        )

    def snapshot_or_reason(self) -> tuple[FleetSnapshot | None, str | None]:
        """The snapshot, or why it could not be read (Redis down or refusing), for a SkipReason."""
        try:
            return self.snapshot(), None
        except redis.RedisError as error:
            return (
                None,
                f"cannot read the fleet from Redis ({type(error).__name__}: {error}); check REDIS_URL",
            )

    def diagnose(self, expected_nodes: list[str] | None = None) -> Diagnosis:
        """A fresh snapshot diagnosed; ``expected_nodes`` adds to the configured ones."""
        expected = sorted(set(self.expected_nodes) | set(expected_nodes or []))
        return diagnose(self.snapshot(), expected_nodes=expected, max_skew_ms=self.max_clock_skew_ms)


def _decode(raw: Any) -> dict[str, Any] | None:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("node_id"), str) else None


def _read_heartbeats(client: redis.Redis) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    node_keys = sorted(client.scan_iter(match=keys.node_key("*"), count=1000))
    if not node_keys:
        return {}, {}
    pipe = client.pipeline(transaction=False)
    pipe.mget(node_keys)
    for key in node_keys:
        pipe.pttl(key)
    raw, *pttls = pipe.execute()
    heartbeats, pttl_by_node = {}, {}
    for payload, pttl in zip(raw, pttls, strict=True):
        body = _decode(payload)
        if body is not None:
            heartbeats[body["node_id"]] = body
            pttl_by_node[body["node_id"]] = int(pttl)
    return heartbeats, pttl_by_node


def _read_leases(client: redis.Redis) -> dict[str, WriterLease]:
    prefix, token_prefix = keys.writer_key(""), keys.token_key("")
    symbols = sorted(
        key.decode()[len(prefix) :]
        for key in client.scan_iter(match=keys.writer_key("*"), count=1000)
        if not key.decode().startswith(token_prefix)
    )
    if not symbols:
        return {}
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        pipe.get(keys.writer_key(symbol))
        pipe.pttl(keys.writer_key(symbol))
        pipe.get(keys.token_key(symbol))
    replies = pipe.execute()
    leases = {}
    for index, symbol in enumerate(symbols):
        holder, pttl, token = replies[3 * index : 3 * index + 3]
        if holder is None:  # expired between SCAN and GET
            continue
        leases[symbol] = WriterLease(
            symbol=symbol,
            holder=holder.decode(),
            pttl_ms=int(pttl),
            token=int(token) if token is not None else None,
        )
    return leases


DEFAULT_SUPERVISOR_URL = "http://127.0.0.1:9199"


class SupervisorError(Exception):
    """The supervisor refused or failed a request; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SupervisorResource(dg.ConfigurableResource):
    """The control API of ``ntplatform up`` (``NT_SUPERVISOR_URL``): list and restart its processes."""

    url: str = DEFAULT_SUPERVISOR_URL
    timeout_s: float = 30.0  # a restart may wait 10 s for SIGTERM before SIGKILL

    def processes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/processes"))

    def restart(self, name: str) -> dict[str, Any]:
        """``{name, old_pid, new_pid}``; ``SupervisorError`` (409: flapping, 404: unknown name)."""
        return dict(self._call("POST", f"/processes/{urllib.parse.quote(name, safe='')}/restart"))

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.url.rstrip("/") + path, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                message = str(json.loads(error.read()).get("error"))
            except (ValueError, AttributeError):
                message = error.reason
            raise SupervisorError(error.code, f"supervisor {method} {path}: {error.code} {message}") from None
        except OSError as error:
            raise SupervisorError(
                0, f"supervisor at {self.url} unreachable ({error}); is `ntplatform up` running?"
            ) from None

"""``FleetResource``: one read of the fleet's state from Redis, for the sensors and their jobs.

No ``from __future__ import annotations``: Dagster reads the field annotations at runtime.
"""

import dataclasses
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

import dagster as dg
import pydantic
import redis
from prometheus_client.parser import text_string_to_metric_families

from assets.resources import RedisResource
from ntplatform import control_client, keys
from ntplatform.coordination.leases import RELEASE_ORPHANED
from ntplatform.diagnosis import (
    MAX_CLOCK_SKEW_MS,
    Diagnosis,
    FleetSnapshot,
    LatestReport,
    WriterLease,
    diagnose,
)
from ntplatform.settings import DagsterSettings

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]  # metric -> sorted labels -> value


class FleetResource(dg.ConfigurableResource):
    """The producer fleet as Redis shows it: heartbeats ``nt:node:*`` and writers ``report:writer:*``."""

    redis: RedisResource
    symbols: list[str] = pydantic.Field(default_factory=list)  # configured symbols (SYMBOLS)
    expected_nodes: list[str] = pydantic.Field(default_factory=list)  # nodes that must be live
    max_clock_skew_ms: int = MAX_CLOCK_SKEW_MS
    http_timeout_s: float = 2.0  # for each node's /health and /metrics

    def snapshot(self, probe_health: bool = False) -> FleetSnapshot:
        """One read of Redis; with ``probe_health`` also every live node's ``/health``."""
        client = self.redis.client()
        started = time.perf_counter()
        seconds, micros = client.time()
        latency_ms = (time.perf_counter() - started) * 1000
        heartbeats, node_pttl = _read_heartbeats(client)
        leases = _read_leases(client)
        symbols = tuple(s.strip().upper() for s in self.symbols if s.strip())
        snapshot = FleetSnapshot(
            redis_time_ms=int(seconds) * 1000 + int(micros) // 1000,
            heartbeats=heartbeats,
            heartbeat_pttl_ms=node_pttl,
            leases=leases,
            symbols=symbols,
            read_latency_ms=round(latency_ms, 3),
            reports=_read_reports(client, sorted(set(symbols) | set(leases))),
        )
        return self.with_health(snapshot, heartbeats) if probe_health else snapshot

    def with_health(self, snapshot: FleetSnapshot, nodes: Iterable[str]) -> FleetSnapshot:
        """The snapshot with the ``/health`` of those of ``nodes`` that heartbeat added."""
        live = sorted(set(nodes) & set(snapshot.heartbeats))
        health = {node: self.health(dict(snapshot.heartbeats[node])) for node in live}
        return dataclasses.replace(snapshot, health={**snapshot.health, **health})

    def health(self, heartbeat: dict[str, Any]) -> dict[str, Any] | None:
        """The node's ``/health`` body (also when it answers 503), or None if unreachable."""
        try:
            return dict(json.loads(self._get(heartbeat, "/health")))
        except (OSError, ValueError, TypeError):
            return None

    def metrics(self, heartbeat: dict[str, Any]) -> Samples | None:
        """The node's ``/metrics`` as samples, or None if unreachable."""
        try:
            text = self._get(heartbeat, "/metrics").decode()
        except (OSError, UnicodeDecodeError):
            return None
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[labels] = float(sample.value)
        return samples

    def counter(
        self, snapshot: FleetSnapshot, name: str, label: str | None = None
    ) -> tuple[dict[str, dict[str, float]], dict[str, int], list[str]]:
        """One counter (``name`` as exposed, e.g. ``nt_hrw_rebalances_total``) from every live
        node, by ``label``'s value: (values by node, ``started_ms`` by node, nodes not answering)."""
        values: dict[str, dict[str, float]] = {}
        started: dict[str, int] = {}
        unreachable = []
        for node, beat in sorted(snapshot.heartbeats.items()):
            samples = self.metrics(dict(beat))
            if samples is None:
                unreachable.append(node)
                continue
            series = samples.get(name, {})
            values[node] = {
                (dict(labels).get(label, "") if label else ""): value for labels, value in series.items()
            }
            started[node] = int(beat.get("started_ms") or 0)
        return values, started, unreachable

    def _get(self, heartbeat: dict[str, Any], path: str) -> bytes:
        base = heartbeat.get("metrics_url") or f"http://127.0.0.1:{heartbeat.get('metrics_port')}"
        try:
            with urllib.request.urlopen(str(base) + path, timeout=self.http_timeout_s) as response:  # noqa: S310
                return bytes(response.read())
        except urllib.error.HTTPError as error:  # /health answers 503 when degraded
            return bytes(error.read())

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
        snapshot = self.snapshot(probe_health=True)
        return diagnose(snapshot, expected_nodes=expected, max_skew_ms=self.max_clock_skew_ms)


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


def _read_reports(client: redis.Redis, symbols: list[str]) -> dict[str, LatestReport]:
    if not symbols:
        return {}
    pipe = client.pipeline(transaction=False)
    for symbol in symbols:
        pipe.get(keys.report_key(symbol))
        pipe.xrevrange(keys.stream_key(symbol), count=1)
    replies = pipe.execute()
    reports = {}
    for index, symbol in enumerate(symbols):
        raw, newest = replies[2 * index : 2 * index + 2]
        body = _report_body(raw, newest)
        if body is None:
            continue
        written = int(newest[0][0].decode().split("-")[0]) if newest else None
        reports[symbol] = LatestReport(
            symbol=symbol,
            node_id=body.get("node_id"),
            seq=body.get("seq"),
            data_age_ms=body.get("data_age_ms"),
            written_ms=written,
        )
    return reports


def _report_body(raw: Any, newest: list[Any]) -> dict[str, Any] | None:
    """The newest report: the stream's last entry if there is one, else ``report:{SYMBOL}``."""
    if newest:
        raw = newest[0][1].get(keys.REPORT_FIELD.encode())
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


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


DEFAULT_SUPERVISOR_URL = DagsterSettings.supervisor_url


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


class ControlResource(dg.ConfigurableResource):
    """Signed commands to producers on ``nt:control`` and lease repair in Redis.

    ``secret`` is the fleet's ``NT_CONTROL_SECRET`` (bound through ``EnvVar`` so Dagster
    never stores or shows it); producers refuse anything not signed with it.
    """

    redis: RedisResource
    secret: str = ""
    ack_timeout_s: float = 5.0

    def send(
        self, command: str, target: str, symbol: str | None = None, expected: int = 1
    ) -> list[dict[str, Any]]:
        """Publish one signed command; the acks received (``control_client.send``)."""
        return control_client.send(
            self.redis.client(), self.secret, command, target, symbol, expected, self.ack_timeout_s
        )

    def release_orphaned_lease(self, symbol: str, holder: str) -> str:
        """Delete ``report:writer:{symbol}`` if it still names ``holder`` and it has no heartbeat."""
        client = self.redis.client()
        result = client.eval(RELEASE_ORPHANED, 2, keys.writer_key(symbol), keys.node_key(holder), holder)
        return {1: "released", 0: "not_held_by_holder", -1: "holder_alive"}[int(result)]

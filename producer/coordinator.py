"""Heartbeats, fleet membership and rendezvous ownership for one node (Redis side).

Runs on the publisher thread. Every ``NT_HEARTBEAT_INTERVAL_MS`` it writes this node's
heartbeat (TTL 5 × interval) and reads every peer's; live nodes are those whose key
exists. Every ``NT_REBALANCE_INTERVAL_SEC``, or at once when membership changes (a key
appeared or expired, or a peer announced ``join``/``leave`` on the coordination
channel) or a signed ``rebalance`` command arrived on ``nt:control``
(``producer.control``), it recomputes the assignment with ``ntplatform.coordination.hrw`` from the
live nodes and the current lease holders, and hands this node's share to the publisher
(leases) and the actor (market data). A symbol held for less than ``NT_MIN_HOLD_MS``
is not given up yet. Wall-clock time is used only for what the heartbeat reports, never
for a decision, so a node with a skewed clock behaves like any other.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import orjson
import redis

from ntplatform import control, keys
from ntplatform.coordination.hrw import assign
from ntplatform.logs import EventLog
from ntplatform.settings import Settings
from producer.control import ControlHandler
from producer.health import NodeState
from producer.metrics import ProducerMetrics

CHANNEL = "nt:coordination"


class Coordinator:
    """Decides which symbols this node should own."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        metrics: ProducerMetrics,
        state: NodeState,
        log: EventLog,
        wall_ms: Callable[[], int],
    ) -> None:
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._state = state
        self._log = log
        self._wall_ms = wall_ms
        self._started_ms = wall_ms()
        self._pubsub: redis.client.PubSub | None = None
        self._next_heartbeat = 0.0
        self._next_rebalance = 0.0
        self._live: list[str] = []
        self._reported_mismatch: dict[str, str] = {}
        self._instance = (socket.gethostname(), os.getpid(), self._started_ms)
        self._others_seen: set[tuple] = set()  # other processes found in our heartbeat key
        self._duplicates_reported: set[tuple] = set()
        host = settings.metrics_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - listening everywhere: peers use the host name
            host = socket.gethostname()
        self._metrics_url = f"http://{host}:{settings.metrics_port}"
        self.control = ControlHandler(
            client, settings.node_id, settings.control_secret, metrics, log, wall_ms
        )
        self.target: set[str] = set() if settings.enable_multi_instance else set(settings.symbols)
        self.on_target: Callable[[list[str]], None] = lambda symbols: None
        # Told every fencing token seen in a peer's heartbeat, so tokens keep rising even
        # if Redis loses its data and another node acquires next.
        self.observe_token: Callable[[str, int], None] = lambda symbol, token: None
        self.observe_seq: Callable[[str, int], None] = lambda symbol, seq: None  # likewise report seqs

    # -- lifecycle ---------------------------------------------------------------------------

    def connected(self) -> None:
        """(Re)join after a connection to Redis was made."""
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(CHANNEL, control.CHANNEL)
        self._next_heartbeat = 0.0
        self._announce("join")

    def leave(self) -> None:
        """Delete the heartbeat and tell peers, so they take over at once."""
        self._client.delete(keys.node_key(self._settings.node_id))
        self._announce("leave")
        self._metrics.node_heartbeat.labels(self._settings.node_id).set(0)

    def heartbeat_failed(self) -> None:
        self._metrics.node_heartbeat.labels(self._settings.node_id).set(0)

    def _announce(self, event: str) -> None:
        self._client.publish(CHANNEL, orjson.dumps({"event": event, "node_id": self._settings.node_id}))

    # -- each publisher-loop iteration ---------------------------------------------------------

    def tick(self, tokens: dict[str, int], acquired_at: dict[str, float], seqs: dict[str, int]) -> None:
        """Heartbeat, read the fleet and rebalance when due; ``tokens`` are the leases held,
        ``seqs`` the last report seq written per symbol."""
        now = time.monotonic()
        held = sorted(tokens)
        reason = self._peer_announcement()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self._settings.heartbeat_interval_ms / 1000
            self._heartbeat(tokens, seqs)
            if self._scan_members():
                reason = reason or "membership_changed"
        if not self._settings.enable_multi_instance:
            return
        if reason is None and now >= self._next_rebalance:
            reason = "periodic"
        if reason is not None:
            self._next_rebalance = now + self._settings.rebalance_interval_sec
            self._rebalance(reason, held, acquired_at)

    def _peer_announcement(self) -> str | None:
        reason = None
        while self._pubsub is not None:
            message = self._pubsub.get_message(timeout=0.0)
            if message is None:
                break
            if _text(message["channel"]) == control.CHANNEL:
                if self.control.handle(message["data"]):
                    reason = "control_command"
                    self._next_heartbeat = 0.0  # read membership first
                continue
            try:
                body = orjson.loads(message["data"])
            except (orjson.JSONDecodeError, TypeError):
                continue
            if body.get("node_id") != self._settings.node_id:
                reason = f"peer_{body.get('event')}"
                self._next_heartbeat = 0.0  # read membership now
        return reason

    def _heartbeat(self, tokens: dict[str, int], seqs: dict[str, int]) -> None:
        s = self._settings
        host, pid, started_ms = self._instance
        payload = {
            "node_id": s.node_id,
            "pid": pid,
            "host": host,
            "started_ms": started_ms,
            "wall_ms": self._wall_ms(),
            "owned_symbols": sorted(tokens),
            "fencing_tokens": tokens,
            "report_seqs": {symbol: seqs[symbol] for symbol in sorted(tokens) if symbol in seqs},
            "config_fingerprint": s.coordination_fingerprint(),
            "lease_ttl_ms": s.lease_ttl_ms,
            "min_hold_ms": s.min_hold_ms,
            "heartbeat_interval_ms": s.heartbeat_interval_ms,
            "rebalance_interval_sec": s.rebalance_interval_sec,
            "metrics_port": s.metrics_port,
            "metrics_url": self._metrics_url,
        }
        pipe = self._client.pipeline(transaction=False)
        pipe.get(keys.node_key(s.node_id))
        pipe.set(keys.node_key(s.node_id), orjson.dumps(payload), px=s.heartbeat_ttl_ms)
        previous, _ = pipe.execute()
        self._metrics.node_heartbeat.labels(s.node_id).set(1)
        self._check_duplicate(previous)

    def _check_duplicate(self, previous: bytes | None) -> None:
        """Another live process heartbeating under this node's id (a copy-pasted NT_NODE_ID).

        Our key holding another process's heartbeat once is normal: the one a restarted node's
        previous process left behind. Finding that process there again, after we overwrote it,
        means it is alive and writing: the two fight over every lease (``lease_conflict``).
        """
        try:
            body = orjson.loads(previous) if previous else None
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        other = (body.get("host"), body.get("pid"), body.get("started_ms"))
        if other == self._instance:
            return
        if other in self._others_seen and other not in self._duplicates_reported:
            self._duplicates_reported.add(other)
            self._state.duplicate_node_id = True
            self._log.error(
                "duplicate_node_id",
                other_host=other[0],
                other_pid=other[1],
                other_started_ms=other[2],
                hint="two processes run with this NT_NODE_ID: give each node its own, then restart one",
            )
        self._others_seen.add(other)

    def _scan_members(self) -> bool:
        """Read every heartbeat; return whether the set of live nodes changed."""
        node_keys = sorted(self._client.scan_iter(match=keys.node_key("*"), count=1000))
        payloads = self._client.mget(node_keys) if node_keys else []
        live, peers = [], {}
        for raw in payloads:
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("node_id"), str):
                live.append(body["node_id"])
                peers[body["node_id"]] = body
                for symbol, token in (body.get("fencing_tokens") or {}).items():
                    self.observe_token(str(symbol), int(token))
                for symbol, seq in (body.get("report_seqs") or {}).items():
                    self.observe_seq(str(symbol), int(seq))
        if self._settings.node_id not in live:
            live.append(self._settings.node_id)
        live.sort()
        self._check_fingerprints(peers)
        changed = live != self._live
        self._live = live
        self._state.live_nodes = live
        return changed

    def _check_fingerprints(self, peers: dict[str, dict]) -> None:
        mine = self._settings.coordination_fingerprint()
        mismatched = {n: p for n, p in peers.items() if p.get("config_fingerprint") != mine}
        for node, body in mismatched.items():
            if self._reported_mismatch.get(node) != body.get("config_fingerprint"):
                self._log.warning(
                    "configuration_mismatch",
                    peer=node,
                    peer_fingerprint=body.get("config_fingerprint"),
                    fingerprint=mine,
                    peer_lease_ttl_ms=body.get("lease_ttl_ms"),
                    peer_min_hold_ms=body.get("min_hold_ms"),
                    lease_ttl_ms=self._settings.lease_ttl_ms,
                    min_hold_ms=self._settings.min_hold_ms,
                )
        self._reported_mismatch = {n: str(p.get("config_fingerprint")) for n, p in mismatched.items()}
        self._state.mismatched_nodes = sorted(mismatched)
        self._metrics.config_mismatch.set(len(mismatched))

    def _rebalance(self, reason: str, held: list[str], acquired_at: dict[str, float]) -> None:
        symbols = list(self._settings.symbols)
        holders = self._client.mget([keys.writer_key(s) for s in symbols])
        current = {s: _text(h) for s, h in zip(symbols, holders, strict=True) if h is not None}
        assignment = assign(symbols, self._live, current, self._settings.hrw_sticky_pct)
        mine = {s for s, node in assignment.items() if node == self._settings.node_id}
        now = time.monotonic()
        min_hold_s = self._settings.min_hold_ms / 1000
        kept = {s for s in held if s not in mine and now - acquired_at.get(s, 0.0) < min_hold_s}
        mine |= kept
        if mine == self.target:
            return
        self._metrics.hrw_rebalances.inc()
        self._log.info(
            "rebalancing_triggered",
            reason=reason,
            live_nodes=self._live,
            acquiring=sorted(mine - self.target),
            releasing=sorted(self.target - mine),
            held_for_min_hold=sorted(kept),
        )
        self.target = mine
        self.on_target(sorted(mine))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

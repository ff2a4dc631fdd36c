"""``producer_heartbeat_sensor``: a producer stopped heartbeating, or none is (guide section 4).

Cursor (JSON): ``live`` maps each node seen heartbeating at the last tick to its last
heartbeat (``started_ms``, ``wall_ms``, ``host``, ``pid``, ``metrics_port``); ``incidents``
maps each node that is down, and ``*`` for "no active producers", to its open incident.

One incident, one run: a node that was live and has no heartbeat now opens the incident
``producer_down:{node}:{started_ms}:{wall_ms}`` (its last heartbeat, so a later outage of the
same process is a new incident); a node in ``FleetResource.expected_nodes`` never seen opens
``producer_down:{node}:missing-since:{redis_ms}``; no heartbeat at all opens
``no_active_producers:{redis_ms}`` and covers every missing node. The incident id is the
run's ``run_key``; it stays open (no new run) until the node heartbeats again. A node that
is not in the expected nodes (``NT_EXPECTED_NODES``; ``ntplatform up`` lists its own) and stays
down for ``FORGET_AFTER_MS`` is no longer watched: it was most likely stopped on purpose (a node
started by hand, scaled down), and the tick that forgets it says so.

Jobs: a single node down launches ``restart_producer`` for it (diagnosis, then a restart
through the supervisor); no active producers at all launches ``diagnose_fleet`` only, since
when every node is gone the cause is rarely the nodes themselves (Redis, the network, the
host, ``ntplatform up`` itself) and restarting them blindly would hide it.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import json
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ntplatform.diagnosis import FleetSnapshot, diagnose
from sensors import running_sensor
from sensors.fleet_diagnosis import diagnose_fleet, incident_run_request
from sensors.remediation import restart_producer, restart_run_request
from sensors.resources import FleetResource

TRIGGER = "producer_heartbeat"
FLEET = "*"
REMEMBERED = ("started_ms", "wall_ms", "host", "pid", "metrics_port")
FORGET_AFTER_MS = 10 * 60 * 1000  # an unexpected node down this long is no longer watched


@dataclass
class HeartbeatCursor:
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> "HeartbeatCursor":
        if not raw:
            return cls()
        body = json.loads(raw)
        return cls(live=dict(body.get("live", {})), incidents=dict(body.get("incidents", {})))

    def dump(self) -> str:
        return json.dumps({"live": self.live, "incidents": self.incidents}, sort_keys=True)


def _node_incident(node: str, last: dict[str, Any] | None, redis_ms: int) -> str:
    if last:
        return f"producer_down:{node}:{last.get('started_ms')}:{last.get('wall_ms')}"
    return f"producer_down:{node}:missing-since:{redis_ms}"


def evaluate(
    cursor: HeartbeatCursor, snapshot: FleetSnapshot, expected_nodes: list[str]
) -> tuple[list[dg.RunRequest], HeartbeatCursor]:
    """The run requests for new incidents and the next cursor (no I/O)."""
    live = snapshot.heartbeats
    incidents = {
        node: inc
        for node, inc in cursor.incidents.items()
        if not (node in live or (node == FLEET and live))
        and not _given_up(node, inc, expected_nodes, snapshot.redis_time_ms)
    }
    missing = sorted((set(cursor.live) | set(expected_nodes)) - set(live) - set(incidents))
    requests = []
    if not live and FLEET not in incidents:
        incident = f"no_active_producers:{snapshot.redis_time_ms}"
        down = sorted(set(missing) | {n for n in incidents if n != FLEET})
        findings = diagnose(snapshot, expected_nodes=down).of_kind("no_active_producers")
        requests.append(incident_run_request(incident, TRIGGER, findings, nodes=down))
        for node in [FLEET, *missing]:
            incidents[node] = {"id": incident, "since_ms": snapshot.redis_time_ms}
    elif live:
        findings_by_node = {
            f.node: f for f in diagnose(snapshot, expected_nodes=missing).of_kind("node_down")
        }
        for node in missing:
            incident = _node_incident(node, cursor.live.get(node), snapshot.redis_time_ms)
            finding = findings_by_node[node]
            owned = (cursor.live.get(node) or {}).get("owned_symbols", [])
            requests.append(restart_run_request(incident, TRIGGER, [finding], node, owned))
            incidents[node] = {"id": incident, "since_ms": snapshot.redis_time_ms}
    remembered = {
        node: {k: body.get(k) for k in (*REMEMBERED, "owned_symbols")} for node, body in live.items()
    }
    return requests, HeartbeatCursor(live=remembered, incidents=incidents)


def _given_up(node: str, incident: dict[str, Any], expected_nodes: list[str], redis_ms: int) -> bool:
    """An unexpected node down for ``FORGET_AFTER_MS``: stop watching it."""
    if node == FLEET or node in expected_nodes:
        return False
    return redis_ms - int(incident.get("since_ms", redis_ms)) >= FORGET_AFTER_MS


def forgotten_nodes(before: HeartbeatCursor, after: HeartbeatCursor, snapshot: FleetSnapshot) -> list[str]:
    """Nodes whose incident ``evaluate`` dropped although they still do not heartbeat."""
    dropped = set(before.incidents) - set(after.incidents) - {FLEET}
    return sorted(dropped - set(snapshot.heartbeats))


def _skip_reason(snapshot: FleetSnapshot, cursor: HeartbeatCursor, forgotten: list[str]) -> str:
    count = len(snapshot.heartbeats)
    down = {n: inc["id"] for n, inc in cursor.incidents.items() if n != FLEET}
    let_go = (
        f"no longer watching {', '.join(forgotten)}: down for {FORGET_AFTER_MS // 60_000} min and not "
        "in NT_EXPECTED_NODES (add it there to keep watching)"
    )
    if not down and not cursor.incidents:
        return (
            f"{count} producers heartbeating; {let_go}"
            if forgotten
            else f"all {count} producers heartbeating"
        )
    if not snapshot.heartbeats:
        return f"no active producers, run already requested ({cursor.incidents[FLEET]['id']})"
    still = ", ".join(f"{n} ({i})" for n, i in sorted(down.items()))
    parts = [
        f"{count} producers heartbeating",
        *([let_go] if forgotten else []),
        f"still down, run already requested: {still}",
    ]
    return "; ".join(parts)


@running_sensor(jobs=[restart_producer, diagnose_fleet])
def producer_heartbeat_sensor(context: dg.SensorEvaluationContext, fleet: FleetResource) -> dg.SensorResult:
    """A node that was heartbeating stopped (dead, hung, frozen), or no producer heartbeats at all."""
    snapshot, problem = fleet.snapshot_or_reason()
    if snapshot is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(problem), cursor=context.cursor)
    before = HeartbeatCursor.load(context.cursor)
    requests, cursor = evaluate(before, snapshot, fleet.expected_nodes)
    forgotten = forgotten_nodes(before, cursor, snapshot)
    for node in forgotten:
        context.log.info(f"{TRIGGER}: no longer watching {node} (down, not in NT_EXPECTED_NODES)")
    if requests:
        for request in requests:
            context.log.warning(f"{TRIGGER}: incident {request.run_key}")
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump())
    reason = _skip_reason(snapshot, cursor, forgotten)
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor.dump())

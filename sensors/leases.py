"""``lease_conflict_sensor``: orphaned leases and symbols without owner (guide section 2).

Orphaned: ``report:writer:{SYMBOL}`` names a node that has no heartbeat.

Both happen briefly during every failover (a lease outlives its dead holder by up to
``NT_LEASE_TTL_MS``; a moved symbol is unowned for a fraction of a second), so a finding
becomes an incident only when the next tick still shows it (``pending`` in the cursor), or at
once for a lease that never expires (PTTL -1), which nothing will clear.

Incidents: ``orphaned_lease:{symbol}:{holder}:{token}`` and
``symbol_unowned:{symbol}:{first_seen_redis_ms}``; the id is the run's ``run_key`` and stays in
``open`` (no new run) while the finding persists. With no producer heartbeating at all, this
sensor stands aside: ``producer_heartbeat_sensor`` raises ``no_active_producers``.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import json
from dataclasses import dataclass, field

import dagster as dg

from ntplatform.diagnosis import Finding, FleetSnapshot, diagnose
from sensors.fleet_diagnosis import diagnose_fleet, incident_run_request
from sensors.resources import FleetResource

TRIGGER = "lease_conflict"
KINDS = ("orphaned_lease", "symbol_unowned")


@dataclass
class LeaseCursor:
    pending: dict[str, int] = field(default_factory=dict)  # finding key -> first seen (Redis ms)
    open: dict[str, str] = field(default_factory=dict)  # finding key -> incident id

    @classmethod
    def load(cls, raw: str | None) -> "LeaseCursor":
        if not raw:
            return cls()
        body = json.loads(raw)
        return cls(pending=dict(body.get("pending", {})), open=dict(body.get("open", {})))

    def dump(self) -> str:
        return json.dumps({"pending": self.pending, "open": self.open}, sort_keys=True)


def _key(finding: Finding) -> str:
    if finding.kind == "orphaned_lease":
        return f"orphaned_lease:{finding.symbol}:{finding.node}:{finding.data.get('token')}"
    return f"symbol_unowned:{finding.symbol}"


def _incident(key: str, finding: Finding, first_seen_ms: int) -> str:
    return key if finding.kind == "orphaned_lease" else f"{key}:{first_seen_ms}"


def evaluate(cursor: LeaseCursor, snapshot: FleetSnapshot) -> tuple[list[dg.RunRequest], LeaseCursor]:
    """The run requests for confirmed new incidents and the next cursor (no I/O)."""
    if not snapshot.heartbeats:
        return [], LeaseCursor()
    current = {_key(f): f for f in diagnose(snapshot).of_kind(*KINDS)}
    opened = {k: v for k, v in cursor.open.items() if k in current}
    pending = {k: v for k, v in cursor.pending.items() if k in current and k not in opened}
    requests = []
    for key, finding in sorted(current.items()):
        if key in opened:
            continue
        never_expires = finding.kind == "orphaned_lease" and finding.data.get("pttl_ms", 0) < 0
        if key not in pending and not never_expires:
            pending[key] = snapshot.redis_time_ms
            continue
        incident = _incident(key, finding, pending.pop(key, snapshot.redis_time_ms))
        nodes = [finding.node] if finding.node else []
        symbols = [finding.symbol] if finding.symbol else []
        requests.append(incident_run_request(incident, TRIGGER, [finding], nodes, symbols))
        opened[key] = incident
    return requests, LeaseCursor(pending=pending, open=opened)


def _skip_reason(snapshot: FleetSnapshot, cursor: LeaseCursor) -> str:
    if not snapshot.heartbeats:
        return "no producer heartbeating: left to producer_heartbeat_sensor"
    parts = []
    if cursor.pending:
        parts.append(f"waiting one more tick to confirm: {', '.join(sorted(cursor.pending))}")
    if cursor.open:
        parts.append(f"run already requested: {', '.join(sorted(cursor.open.values()))}")
    if not parts:
        symbols = len(snapshot.all_symbols())
        return f"all {symbols} symbols held by a heartbeating node"
    return "; ".join(parts)


@dg.sensor(
    job=diagnose_fleet,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def lease_conflict_sensor(context: dg.SensorEvaluationContext, fleet: FleetResource) -> dg.SensorResult:
    """Orphaned leases (holder without heartbeat) or symbols nobody holds, persisting over a tick."""
    snapshot, problem = fleet.snapshot_or_reason()
    if snapshot is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(problem), cursor=context.cursor)
    requests, cursor = evaluate(LeaseCursor.load(context.cursor), snapshot)
    if requests:
        for request in requests:
            context.log.warning(f"{TRIGGER}: incident {request.run_key}")
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump())
    return dg.SensorResult(skip_reason=dg.SkipReason(_skip_reason(snapshot, cursor)), cursor=cursor.dump())

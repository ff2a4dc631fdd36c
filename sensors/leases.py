"""``lease_conflict_sensor``: orphaned leases and symbols without owner (guide section 2).

Orphaned: ``report:writer:{SYMBOL}`` names a node that has no heartbeat.

Both happen briefly during every failover (a lease outlives its dead holder by up to
``NT_LEASE_TTL_MS``; a moved symbol is unowned for a fraction of a second), so a finding
becomes an incident only when the next tick still shows it (``pending`` in the cursor), or at
once for a lease that never expires (PTTL -1), which nothing will clear.

Incidents: ``orphaned_lease:{symbol}:{holder}:{token}`` and
``symbol_unowned:{symbol}:{first_seen_redis_ms}``; the id is the run's ``run_key`` and stays in
``open`` (no new run) while the finding persists (``sensors.incidents``). With no producer
heartbeating at all, this sensor stands aside: ``producer_heartbeat_sensor`` raises
``no_active_producers``.

Jobs: an orphaned lease launches ``release_orphaned_leases`` (release it, rebalance, wait for
a live writer); an unowned symbol launches ``force_rebalance``.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import dagster as dg

from ntplatform.diagnosis import Finding, FleetSnapshot, diagnose
from sensors import running_sensor
from sensors.incidents import IncidentBook, incident_sensor_tick
from sensors.resources import FleetResource
from sensors.symbol_remediation import force_rebalance, release_orphaned_leases, symbol_run_request

TRIGGER = "lease_conflict"
KINDS = ("orphaned_lease", "symbol_unowned")
JOBS = {"orphaned_lease": "release_orphaned_leases", "symbol_unowned": "force_rebalance"}


def _key(finding: Finding) -> str:
    if finding.kind == "orphaned_lease":
        return f"orphaned_lease:{finding.symbol}:{finding.node}:{finding.data.get('token')}"
    return f"symbol_unowned:{finding.symbol}"


def _incident(key: str, finding: Finding, first_seen_ms: int) -> str:
    return key if finding.kind == "orphaned_lease" else f"{key}:{first_seen_ms}"


def _never_expires(finding: Finding) -> bool:
    return finding.kind == "orphaned_lease" and finding.data.get("pttl_ms", 0) < 0


def evaluate(book: IncidentBook, snapshot: FleetSnapshot) -> tuple[list[dg.RunRequest], IncidentBook]:
    """The run requests for confirmed new incidents and the next book (no I/O)."""
    if not snapshot.heartbeats:
        return [], IncidentBook()
    current = {_key(f): f for f in diagnose(snapshot).of_kind(*KINDS)}
    new, book = book.update(current, snapshot.redis_time_ms, _never_expires, _incident)
    requests = [
        symbol_run_request(JOBS[f.kind], incident, TRIGGER, [f], [str(f.symbol)]) for incident, f in new
    ]
    return requests, book


def _skip_reason(snapshot: FleetSnapshot, book: IncidentBook) -> str:
    if not snapshot.heartbeats:
        return "no producer heartbeating: left to producer_heartbeat_sensor"
    return book.waiting() or f"all {len(snapshot.all_symbols())} symbols held by a heartbeating node"


@running_sensor(jobs=[release_orphaned_leases, force_rebalance])
def lease_conflict_sensor(context: dg.SensorEvaluationContext, fleet: FleetResource) -> dg.SensorResult:
    """Orphaned leases (holder without heartbeat) or symbols nobody holds, persisting over a tick."""
    return incident_sensor_tick(context, fleet.snapshot_or_reason(), TRIGGER, evaluate, _skip_reason)

"""``market_data_staleness_sensor``: a symbol's writer publishes old data, or stopped (guide 1, 6).

``symbol_stale`` (``ntplatform.diagnosis``): the newest report of a symbol held by a live
node carries market data older than 5 s, or no report was written for 5 s (Redis's clock,
from the stream entry id). Confirmed on the next tick (``sensors.incidents``), then one
``resubscribe_symbol`` run per incident (``symbol_stale:{symbol}:{first_seen_redis_ms}``):
the writer drops and renews the symbol's subscriptions and the run waits for fresh reports.
A writer whose ``/health`` shows the symbol's book snapshots rate-limited by the exchange
(``symbol_rate_limited``) is left to back off by itself: a resubscribe is one more request.
Unowned symbols and leases of dead nodes are ``lease_conflict_sensor``'s.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import dagster as dg

from ntplatform.diagnosis import FleetSnapshot, diagnose
from sensors import running_sensor
from sensors.incidents import IncidentBook, incident_sensor_tick
from sensors.resources import FleetResource
from sensors.symbol_remediation import resubscribe_symbol, symbol_run_request

TRIGGER = "market_data_staleness"


def evaluate(book: IncidentBook, snapshot: FleetSnapshot) -> tuple[list[dg.RunRequest], IncidentBook]:
    """The run requests for confirmed new incidents and the next book (no I/O)."""
    current = {f"symbol_stale:{f.symbol}": f for f in diagnose(snapshot).of_kind("symbol_stale")}
    new, book = book.update(current, snapshot.redis_time_ms)
    requests = [
        symbol_run_request("resubscribe_symbol", incident, TRIGGER, [f], [str(f.symbol)])
        for incident, f in new
    ]
    return requests, book


def _skip_reason(snapshot: FleetSnapshot, book: IncidentBook) -> str:
    limited = [
        f"{f.symbol} has no fresh reports, but {f.node}'s book snapshots are rate-limited by the "
        "exchange (symbol_rate_limited): not resubscribing (that adds requests); the node retries by itself"
        for f in diagnose(snapshot).of_kind("symbol_rate_limited")
    ]
    fresh = [s for s in snapshot.all_symbols() if s in snapshot.reports]
    waiting = book.waiting()
    return (
        "; ".join([*([waiting] if waiting else []), *limited])
        or f"{len(fresh)} symbols with reports, none stale"
    )


@running_sensor(job=resubscribe_symbol)
def market_data_staleness_sensor(
    context: dg.SensorEvaluationContext, fleet: FleetResource
) -> dg.SensorResult:
    """A live writer's reports carry market data older than 5 s, or stopped coming; not while the
    exchange rate-limits the writer's book snapshots (a resubscribe would ask for more)."""
    snapshot, problem = fleet.snapshot_or_reason()
    if snapshot is not None:  # the writers of stale symbols say in /health whether they are rate-limited
        writers = [str(f.node) for f in diagnose(snapshot).of_kind("symbol_stale")]
        snapshot = fleet.with_health(snapshot, writers)
    return incident_sensor_tick(context, (snapshot, problem), TRIGGER, evaluate, _skip_reason)

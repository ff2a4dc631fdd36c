"""Sensors on counter rates scraped from every live node's ``/metrics`` (guide sections 3, 7).

- ``excessive_rebalancing_sensor``: a node's ``nt_hrw_rebalances_total`` grows faster than
  0.05/s over the window; the diagnosis says whether a node restarted meanwhile (flapping,
  seen as a new ``started_ms``) or none did (heartbeats expiring, aggressive settings).
- ``ws_resubscribe_loop_sensor``: a node's ``nt_ws_resubscribe_total`` grows faster than
  0.1/s over the window, not counting the platform's own resubscriptions
  (``symbol_acquired``, ``control_command``); the finding lists the reasons.

Both keep ``WINDOW_MS`` of samples in the cursor (``sensors.rates``), so they say nothing
until the window is filled, and confirm a finding on the next tick (``sensors.incidents``).
They launch ``diagnose_fleet``: the remedies (fixing a crashing node, the exchange or the
network, tuning settings) are an operator's, and the recorded diagnosis tells which.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import json
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from ntplatform.churn import excessive_rebalancing, resubscribe_loop
from ntplatform.diagnosis import Finding, FleetSnapshot
from sensors import running_sensor
from sensors.fleet_diagnosis import diagnose_fleet, incident_run_request
from sensors.incidents import IncidentBook, sensor_result
from sensors.rates import CounterHistory, Increase, Sample
from sensors.resources import FleetResource

WINDOW_MS = 60_000


@dataclass(frozen=True)
class CounterWatch:
    trigger: str
    metric: str  # as exposed, with _total
    label: str | None
    findings: Callable[[Increase], list[Finding]]
    quiet: str  # skip reason when all is well


def _rebalancing(increase: Increase) -> list[Finding]:
    by_node = {node: sum(series.values()) for node, series in increase.by_node.items()}
    finding = excessive_rebalancing(by_node, increase.seconds, increase.restarted)
    return [finding] if finding else []


def _resubscriptions(increase: Increase) -> list[Finding]:
    found = (resubscribe_loop(node, series, increase.seconds) for node, series in increase.by_node.items())
    return [f for f in found if f is not None]


REBALANCING = CounterWatch(
    "excessive_rebalancing", "nt_hrw_rebalances_total", None, _rebalancing, "ownership changes within limits"
)
RESUBSCRIPTIONS = CounterWatch(
    "ws_resubscribe_loop", "nt_ws_resubscribe_total", "reason", _resubscriptions, "no resubscription loop"
)


def evaluate(
    watch: CounterWatch,
    history: CounterHistory,
    book: IncidentBook,
    snapshot: FleetSnapshot,
    sample: Sample,
    window_ms: int = WINDOW_MS,
) -> tuple[list[dg.RunRequest], CounterHistory, IncidentBook, Increase | None]:
    """Add this tick's sample; the run requests for confirmed new incidents (no I/O)."""
    history = history.add(sample)
    increase = history.increase(window_ms)
    findings = watch.findings(increase) if increase is not None else []
    current = {f"{f.kind}:{f.subject}": f for f in findings}
    new, book = book.update(current, snapshot.redis_time_ms)
    requests = [
        incident_run_request(incident, watch.trigger, [f], [f.node] if f.node else [], [])
        for incident, f in new
    ]
    return requests, history, book, increase


def _sensor(watch: CounterWatch, doc: str) -> dg.SensorDefinition:
    def evaluate_tick(context: dg.SensorEvaluationContext, fleet: FleetResource) -> dg.SensorResult:
        snapshot, problem = fleet.snapshot_or_reason()
        if snapshot is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(problem), cursor=context.cursor)
        values, started, unreachable = fleet.counter(snapshot, watch.metric, watch.label)
        body = json.loads(context.cursor) if context.cursor else {}
        requests, history, book, increase = evaluate(
            watch,
            CounterHistory.from_list(body.get("history")),
            IncidentBook.from_dict(body.get("incidents")),
            snapshot,
            Sample(snapshot.redis_time_ms, values, started),
        )
        cursor = json.dumps({"history": history.to_list(), "incidents": book.to_dict()}, sort_keys=True)

        def skip() -> str:
            if increase is None:
                covered = f"{WINDOW_MS // 1000} s are covered"
                return f"collecting {watch.metric} from {len(values)} nodes until {covered}"
            note = f" ({', '.join(unreachable)} not answering /metrics)" if unreachable else ""
            return (book.waiting() or f"{watch.quiet} over {increase.seconds:.0f} s") + note

        return sensor_result(context, watch.trigger, requests, cursor, skip)

    evaluate_tick.__doc__ = doc
    return running_sensor(name=f"{watch.trigger}_sensor", job=diagnose_fleet)(evaluate_tick)


excessive_rebalancing_sensor = _sensor(
    REBALANCING, "A node changes symbol ownership more than 0.05 times/s over a minute."
)
ws_resubscribe_loop_sensor = _sensor(
    RESUBSCRIPTIONS, "A node resubscribes market data more than 0.1 times/s over a minute."
)

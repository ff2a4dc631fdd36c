"""Turning findings seen tick after tick into incidents: one run per incident (pure, no I/O).

A finding is identified by a key (``symbol_stale:BTCUSDT``). Most findings appear briefly
during normal operation (every fail-over leaves a lease orphaned for up to its TTL), so a
finding becomes an incident only when the next tick still shows it (it waits in
``pending`` meanwhile), unless ``immediate`` says it cannot clear by itself. An incident's
id is the run's ``run_key``; it stays in ``open``, and no further run is requested, for as
long as the finding persists. When the finding is gone the incident closes, and a later
occurrence is a new incident.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ntplatform.diagnosis import Finding, FleetSnapshot


def _id_with_first_seen(key: str, _finding: Finding, first_seen_ms: int) -> str:
    return f"{key}:{first_seen_ms}"


@dataclass
class IncidentBook:
    pending: dict[str, int] = field(default_factory=dict)  # finding key -> first seen (Redis ms)
    open: dict[str, str] = field(default_factory=dict)  # finding key -> incident id

    @classmethod
    def from_dict(cls, body: Mapping[str, Any] | None) -> IncidentBook:
        body = body or {}
        return cls(pending=dict(body.get("pending", {})), open=dict(body.get("open", {})))

    def to_dict(self) -> dict[str, Any]:
        return {"pending": dict(sorted(self.pending.items())), "open": dict(sorted(self.open.items()))}

    def update(
        self,
        current: Mapping[str, Finding],
        now_ms: int,
        immediate: Callable[[Finding], bool] = lambda finding: False,
        incident_id: Callable[[str, Finding, int], str] = _id_with_first_seen,
    ) -> tuple[list[tuple[str, Finding]], IncidentBook]:
        """The incidents to open now (id, finding) and the next book."""
        opened = {k: v for k, v in self.open.items() if k in current}
        pending = {k: v for k, v in self.pending.items() if k in current and k not in opened}
        new = []
        for key, finding in sorted(current.items()):
            if key in opened:
                continue
            if key not in pending and not immediate(finding):
                pending[key] = now_ms
                continue
            incident = incident_id(key, finding, pending.pop(key, now_ms))
            new.append((incident, finding))
            opened[key] = incident
        return new, IncidentBook(pending=pending, open=opened)

    def waiting(self) -> str | None:
        """What the skip reason says about pending and open incidents (None: nothing)."""
        parts = []
        if self.pending:
            parts.append(f"waiting one more tick to confirm: {', '.join(sorted(self.pending))}")
        if self.open:
            parts.append(f"run already requested: {', '.join(sorted(self.open.values()))}")
        return "; ".join(parts) or None


def sensor_result(
    context: dg.SensorEvaluationContext,
    trigger: str,
    requests: list[dg.RunRequest],
    cursor: str,
    skip_reason: Callable[[], str],
) -> dg.SensorResult:
    """The tick's result: the run requests (each logged), else the skip reason."""
    if requests:
        for request in requests:
            context.log.warning(f"{trigger}: incident {request.run_key} -> {request.job_name}")
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(skip_reason=dg.SkipReason(skip_reason()), cursor=cursor)


Evaluate = Callable[[IncidentBook, FleetSnapshot], tuple[list[dg.RunRequest], IncidentBook]]
SkipReason = Callable[[FleetSnapshot, IncidentBook], str]


def incident_sensor_tick(
    context: dg.SensorEvaluationContext,
    snapshot_or_reason: tuple[FleetSnapshot | None, str | None],
    trigger: str,
    evaluate: Evaluate,
    skip_reason: SkipReason,
) -> dg.SensorResult:
    """One tick of a sensor whose cursor is an :class:`IncidentBook` over fleet snapshots."""
    snapshot, problem = snapshot_or_reason
    if snapshot is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(problem), cursor=context.cursor)
    book = IncidentBook.from_dict(json.loads(context.cursor) if context.cursor else None)
    requests, book = evaluate(book, snapshot)
    cursor = json.dumps(book.to_dict(), sort_keys=True)
    return sensor_result(context, trigger, requests, cursor, lambda: skip_reason(snapshot, book))

"""Freshness of the report data, in Dagster's own terms (asset checks on the asset pages).

- ``report_streams``: the producers' ``report:stream:{SYMBOL}`` in Redis, declared as an
  external asset so its check shows in the catalog. ``check_reports_fresh`` fails when a
  configured symbol has no live writer, or its newest report is more than 5 s old or carries
  data more than 5 s old (the ``symbol_unowned`` / ``orphaned_lease`` / ``symbol_stale``
  findings of ``ntplatform.diagnosis``); ``report_freshness_schedule`` runs it every 10 min.
  (The sensors react within seconds; this check is the record on the asset page.)

The archive's own freshness is kept by ``archive_ahead_of_trim_sensor`` (``sensors/archive.py``),
which launches runs for hours not archived yet, and checked by ``check_report_archive_complete``.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import dagster as dg

from ntplatform.diagnosis import diagnose
from sensors.resources import FleetResource

FRESHNESS_KINDS = ("symbol_unowned", "orphaned_lease", "symbol_stale")

report_streams = dg.AssetSpec(
    "report_streams",
    description="report:stream:{SYMBOL} in Redis: every report the producers publish (bounded stream)",
    kinds={"redis"},
    group_name="live",
)


@dg.asset_check(asset=report_streams.key, name="check_reports_fresh", blocking=False)
def check_reports_fresh(fleet: FleetResource) -> dg.AssetCheckResult:
    """Every configured symbol has a live writer whose newest report and data are under 5 s old."""
    snapshot = fleet.snapshot()
    findings = diagnose(snapshot).of_kind(*FRESHNESS_KINDS)
    ages = {
        symbol: {"data_age_ms": r.data_age_ms, "written_ms_ago": snapshot.redis_time_ms - r.written_ms}
        for symbol, r in sorted(snapshot.reports.items())
        if r.written_ms is not None
    }
    return dg.AssetCheckResult(
        passed=not findings,
        description="; ".join(f"{f.kind} {f.subject}: {f.detail}" for f in findings)
        or f"{len(ages)} symbols fresh",
        metadata={"per_symbol": dg.MetadataValue.json(ages), "live_nodes": len(snapshot.heartbeats)},
    )


check_report_freshness = dg.define_asset_job(
    "check_report_freshness",
    selection=dg.AssetSelection.checks(check_reports_fresh),
    description="Check that every symbol's latest report is fresh and held by a live writer.",
)
report_freshness_schedule = dg.ScheduleDefinition(
    job=check_report_freshness,
    cron_schedule="*/10 * * * *",
    description="Every 10 minutes, the report freshness check.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

"""The one place that assembles the Dagster code location: assets/, sensors/, jobs, resources.

``workspace.yaml`` points here. Resources are bound once, below, from the environment:
``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and ``NT_ARCHIVE_DIR`` (default
``data/archive``; a URI such as ``s3://bucket/archive`` works through pyarrow filesystems),
``SYMBOLS`` (the configured symbols, as the producers read it) and ``NT_EXPECTED_NODES``
(comma-separated node ids that must always be heartbeating; optional) and
``NT_SUPERVISOR_URL`` (the control API of ``ntplatform up``, default ``http://127.0.0.1:9199``)
and ``NT_CONTROL_SECRET`` (the producers' shared secret for signed commands on ``nt:control``).
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

from assets import analysis, archive, backfill, freshness
from assets.resources import DEFAULT_REDIS_URL, ArchiveStorageResource, RedisResource
from ntplatform.errors import ConfigError
from ntplatform.settings import load_dagster_settings
from sensors.archive import archive_ahead_of_trim_sensor
from sensors.churn import excessive_rebalancing_sensor, ws_resubscribe_loop_sensor
from sensors.fleet_diagnosis import diagnose_fleet
from sensors.heartbeat import producer_heartbeat_sensor
from sensors.leases import lease_conflict_sensor
from sensors.remediation import restart_producer
from sensors.resources import ControlResource, FleetResource, SupervisorResource
from sensors.staleness import market_data_staleness_sensor
from sensors.symbol_remediation import force_rebalance, release_orphaned_leases, resubscribe_symbol

# Dagster 1.13 warns about its own beta `owners` parameter each time it copies a sensor to bind
# resources, though no sensor here sets owners: kept out of the operators' terminal.
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition", category=dg.BetaWarning
)


def _secret(name: str, default: str = "") -> str | dg.EnvVar:
    # Passwords and secrets are read through EnvVar so Dagster never stores or shows them.
    return dg.EnvVar(name) if os.environ.get(name) else default


try:
    # The same rules as the producers' settings: a bad value stops the code location from
    # loading, and the UI and `dagster-daemon` show this one line instead of acting on it.
    settings = load_dagster_settings()
except ConfigError as error:
    raise dg.DagsterInvalidDefinitionError(f"ntplatform Dagster settings: {error}") from None

redis_db = RedisResource(url=_secret("REDIS_URL", DEFAULT_REDIS_URL))

defs = dg.Definitions(
    assets=[
        archive.report_archive,
        analysis.report_analysis,
        backfill.report_backfill,
        freshness.report_streams,
    ],
    asset_checks=[freshness.check_reports_fresh],
    jobs=[
        archive.archive_reports,
        freshness.check_report_freshness,
        diagnose_fleet,
        restart_producer,
        resubscribe_symbol,
        release_orphaned_leases,
        force_rebalance,
    ],
    schedules=[archive.archive_reports_schedule, freshness.report_freshness_schedule],
    sensors=[
        producer_heartbeat_sensor,
        lease_conflict_sensor,
        market_data_staleness_sensor,
        excessive_rebalancing_sensor,
        ws_resubscribe_loop_sensor,
        archive_ahead_of_trim_sensor,
    ],
    resources={
        "redis_db": redis_db,
        "fleet": FleetResource(
            redis=redis_db, symbols=list(settings.symbols), expected_nodes=list(settings.expected_nodes)
        ),
        "control_channel": ControlResource(redis=redis_db, secret=_secret("NT_CONTROL_SECRET")),
        "supervisor": SupervisorResource(url=settings.supervisor_url),
        "archive_storage": ArchiveStorageResource(root=settings.archive_dir),
    },
)

"""``report_archive``: each hour of ``report:stream:{SYMBOL}`` as Parquet (docs/archive.md).

Hourly partitions in UTC; one file per symbol and hour. The asset carries its completeness
check (``check_report_archive_complete``), evaluated in the same run right after the rows
are read, because that is the moment the stream and the archive can be compared.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pydantic
import redis

from assets.resources import ArchiveStorageResource, RedisResource, require_in_range
from ntplatform import archive, keys
from ntplatform.errors import ConfigError
from ntplatform.settings import load_dagster_settings, parse_symbol

# From 2024: backfilled recordings (ntplatform backfill, report_backfill) reach back that far.
# end_offset=1: the open hour is a partition too, so it can be archived before the stream
# trims it (archive_ahead_of_trim_sensor); re-running it later adds the rest of the hour.
ARCHIVE_PARTITIONS = dg.HourlyPartitionsDefinition(
    start_date="2024-01-01-00:00", timezone="UTC", end_offset=1
)
PARTITION_FORMAT = "%Y-%m-%d-%H:00"
CHECK_NAME = "check_report_archive_complete"


class ArchiveConfig(dg.Config):
    """Which symbols to archive; empty means every ``report:stream:*`` in Redis."""

    symbols: list[str] = pydantic.Field(default_factory=list)
    page_size: int = archive.DEFAULT_PAGE


def _checked_symbols(config: ArchiveConfig) -> list[str]:
    """The configured symbols, upper-cased; a one-line failure for one that breaks the SYMBOLS rule."""
    try:
        return sorted({parse_symbol("symbols", s) for s in config.symbols})
    except ConfigError as error:
        raise dg.Failure(
            description=f"report_archive config symbols: {error.value!r}: {error.allowed}"
        ) from None


def fleet_symbols() -> set[str]:
    """The fleet's configured symbols: ``SYMBOLS``, as the producers and ``FleetResource`` read it."""
    return set(load_dagster_settings().symbols)


def _symbols(
    context: dg.AssetExecutionContext, config: ArchiveConfig, redis_resource: RedisResource
) -> tuple[list[str], list[str]]:
    """The symbols to archive and the configured ones skipped.

    Without configured symbols: every stream. Configured ones must have a stream or be in ``SYMBOLS``.

    A configured symbol of the fleet without a stream gets an empty file ("archived, nothing
    there"); one neither in Redis nor in ``SYMBOLS`` is most likely a typo, and a file for it
    would make ``report_analysis`` report it every hour, so it is skipped with a warning.
    """
    client = redis_resource.client()
    if config.symbols:
        configured = _checked_symbols(config)
        known = fleet_symbols()
        chosen = [s for s in configured if s in known or client.exists(keys.stream_key(s))]
        skipped = [s for s in configured if s not in chosen]
        for symbol in skipped:
            context.log.warning(
                f"{symbol}: no {keys.stream_key(symbol)} in Redis and not in SYMBOLS "
                f"({','.join(sorted(known))}): nothing archived, no file written"
            )
        return chosen, skipped
    prefix = keys.stream_key("")
    found = client.scan_iter(match=f"{prefix}*", count=500, _type="stream")
    return sorted(key.decode()[len(prefix) :] for key in found), []


def _archive_symbol(
    client: redis.Redis,
    storage: ArchiveStorageResource,
    symbol: str,
    start: datetime,
    end: datetime,
    page_size: int,
) -> tuple[pa.Table, str, archive.Completeness]:
    start_ms, end_ms = archive.to_ms(start), archive.to_ms(end)
    first = archive.first_stream_id(client, symbol)
    fresh = archive.rows_to_table(
        list(archive.read_stream_window(client, symbol, start_ms, end_ms, page_size))
    )
    table = archive.merge_trimmed(archive.read_partition(storage.root, symbol, start), fresh, first)
    path = archive.write_partition(storage.root, symbol, start, table)
    previous = archive.read_partition(storage.root, symbol, start - timedelta(hours=1))
    previous_last = max(previous.column("seq").to_pylist(), default=None) if previous else None
    trimmed = first is None or first.ms > start_ms
    seqs = [s for s in table.column("seq").to_pylist() if s is not None]
    return table, path, archive.completeness(seqs, trimmed and table.num_rows > 0, previous_last)


@dg.asset(
    partitions_def=ARCHIVE_PARTITIONS,
    check_specs=[dg.AssetCheckSpec(CHECK_NAME, asset="report_archive")],
    kinds={"parquet", "redis"},
    group_name="archive",
)
def report_archive(
    context: dg.AssetExecutionContext,
    config: ArchiveConfig,
    redis_db: RedisResource,
    archive_storage: ArchiveStorageResource,
) -> dg.MaterializeResult:
    """Every report of the partition's hour, per symbol, in hive-style Parquet under ``NT_ARCHIVE_DIR``."""
    require_in_range("report_archive", "page_size", config.page_size, 1, archive.MAX_PAGE)
    symbols, skipped = _symbols(context, config, redis_db)
    archive_storage.checked_root()
    window = context.partition_time_window
    client = redis_db.client()
    rows: dict[str, int] = {}
    paths: dict[str, str] = {}
    lost: dict[str, int] = {}
    problems: list[str] = []
    for symbol in symbols:
        table, path, found = _archive_symbol(
            client, archive_storage, symbol, window.start, window.end, config.page_size
        )
        rows[symbol], paths[symbol], lost[symbol] = table.num_rows, path, found.lost
        context.log.info(f"archived {symbol} {context.partition_key}: {table.num_rows} rows to {path}")
        if found.lost or found.unverified:
            problems.append(f"{symbol}: {found.description}")
    check = dg.AssetCheckResult(
        check_name=CHECK_NAME,
        passed=not problems,
        description="; ".join(problems) or f"no reports lost ({sum(rows.values())} archived)",
        metadata={"lost_per_symbol": dg.MetadataValue.json(lost), "lost": sum(lost.values())},
    )
    return dg.MaterializeResult(
        check_results=[check],
        metadata={
            "rows": sum(rows.values()),
            "rows_per_symbol": dg.MetadataValue.json(rows),
            "paths": dg.MetadataValue.json(paths),
            "skipped_symbols": dg.MetadataValue.json(skipped),
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
        },
    )


archive_reports = dg.define_asset_job(
    "archive_reports",
    selection=[report_archive],
    description="Write one hour of report:stream:{SYMBOL} entries to Parquet under NT_ARCHIVE_DIR.",
)


# Archive each hour five minutes after it closes, well before the bounded stream trims it
# (the partitions include the open hour, so the previous one is named explicitly).
@dg.schedule(
    job=archive_reports,
    cron_schedule="5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At :05 every hour, archive the hour that just closed.",
)
def archive_reports_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """At :05, the hour that just closed."""
    closed = context.scheduled_execution_time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    key = (closed - timedelta(hours=1)).strftime(PARTITION_FORMAT)
    return dg.RunRequest(run_key=f"archive:{key}", partition_key=key)

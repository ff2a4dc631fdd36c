"""``archive_ahead_of_trim_sensor``: archive report streams before Redis trims them.

Each report stream is capped at about ``NT_STREAM_MAXLEN`` entries; the producers trim the
oldest as they add. Every minute this sensor reads each ``report:stream:{SYMBOL}``'s length
and oldest entry and asks for ``report_archive`` runs:

- every closed hour from the oldest entry's hour on that has no materialisation yet (run key
  ``archive:{partition}``, the one the hourly schedule uses, so the two never both run it),
  or whose latest materialisation ran while the hour was still open (run key
  ``archive-closed:{partition}``: the reports after that run are not archived yet);
- when a stream is at least ``AT_RISK_FILL`` full, the hour of its oldest entry at once,
  open hour included (run key ``archive-ahead:{partition}:{oldest id}``: again whenever
  trimming has moved on); re-running an hour keeps what was archived before.

A stream that fills up within the hour means the stream is too short for the publish rate:
the skip message and the run's tags say so (raise ``NT_STREAM_MAXLEN``).
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from assets.archive import ARCHIVE_PARTITIONS, PARTITION_FORMAT, archive_reports, report_archive
from assets.resources import RedisResource
from ntplatform import archive, keys
from ntplatform.settings import load_dagster_settings
from sensors import running_sensor

AT_RISK_FILL = 0.8
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class StreamState:
    symbol: str
    length: int
    oldest_ms: int | None  # Redis time of the oldest entry (None: empty)
    oldest_id: str | None


@dataclass(frozen=True)
class ArchiveRequest:
    partition: str
    run_key: str
    reason: str


def _key(hour_ms: int) -> str:
    return datetime.fromtimestamp(hour_ms / 1000, UTC).strftime(PARTITION_FORMAT)


def closed_hours(streams: list[StreamState], now_ms: int, first_hour_ms: int) -> list[str]:
    """The partitions of the closed hours the streams still hold entries of, oldest first."""
    present = [s.oldest_ms for s in streams if s.oldest_ms is not None]
    if not present:
        return []
    oldest_hour = max(first_hour_ms, min(present) // HOUR_MS * HOUR_MS)
    return [_key(hour) for hour in range(oldest_hour, now_ms // HOUR_MS * HOUR_MS, HOUR_MS)]


def plan(
    streams: list[StreamState],
    materialized: Mapping[str, int],
    now_ms: int,
    maxlen: int,
    first_hour_ms: int,
) -> tuple[list[ArchiveRequest], list[str]]:
    """The archive runs to request and notes for the operator (no I/O).

    ``materialized``: each archived partition's latest materialisation time (ms).
    """
    requests: dict[str, ArchiveRequest] = {}
    notes = []
    present = [s for s in streams if s.oldest_ms is not None]
    for key in closed_hours(streams, now_ms, first_hour_ms):
        at = materialized.get(key)
        hour_end = (
            int(datetime.strptime(key, PARTITION_FORMAT).replace(tzinfo=UTC).timestamp() * 1000) + HOUR_MS
        )
        if at is None:
            requests[key] = ArchiveRequest(key, f"archive:{key}", "closed hour not archived yet")
        elif at < hour_end:
            requests[key] = ArchiveRequest(key, f"archive-closed:{key}", "archived while the hour was open")
    for stream in present:
        fill = stream.length / maxlen if maxlen else 0.0
        if fill < AT_RISK_FILL:
            continue
        hour = max(first_hour_ms, int(stream.oldest_ms or 0) // HOUR_MS * HOUR_MS)
        key = _key(hour)
        run_key = f"archive-ahead:{key}:{stream.oldest_id}"
        requests.setdefault(key, ArchiveRequest(key, run_key, f"{stream.symbol} stream {fill:.0%} full"))
        held_min = (now_ms - int(stream.oldest_ms or 0)) / 60_000
        if held_min < 60:
            notes.append(
                f"report:stream:{stream.symbol} holds only {held_min:.0f} min of reports "
                f"({stream.length} of ~{maxlen}): raise NT_STREAM_MAXLEN"
            )
    return sorted(requests.values(), key=lambda r: r.partition), notes


def _streams(redis_db: RedisResource) -> list[StreamState]:
    client = redis_db.client()
    prefix = keys.stream_key("")
    states = []
    for raw in sorted(client.scan_iter(match=f"{prefix}*", count=500, _type="stream")):
        key = raw.decode()
        symbol = key[len(prefix) :]
        oldest = archive.first_stream_id(client, symbol)
        states.append(
            StreamState(
                symbol=symbol,
                length=int(client.xlen(key)),
                oldest_ms=oldest.ms if oldest else None,
                oldest_id=str(oldest) if oldest else None,
            )
        )
    return states


def _materialized_at(instance: dg.DagsterInstance, partitions: list[str]) -> dict[str, int]:
    """The latest materialisation time (ms) of each of ``partitions`` that has one."""
    archived = set(instance.get_materialized_partitions(report_archive.key)) & set(partitions)
    times = {}
    for partition in sorted(archived):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=report_archive.key, asset_partitions=[partition]), limit=1
        ).records
        if records:
            times[partition] = int(records[0].timestamp * 1000)
    return times


@running_sensor(job=archive_reports, minimum_interval_seconds=60)
def archive_ahead_of_trim_sensor(
    context: dg.SensorEvaluationContext, redis_db: RedisResource
) -> dg.SensorResult:
    """Archive hours that are not archived yet, and any hour a nearly full stream is about to trim."""
    try:
        streams = _streams(redis_db)
        seconds, micros = redis_db.client().time()
    except Exception as error:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"cannot read the report streams: {error}"))
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    maxlen = load_dagster_settings().stream_maxlen
    first_hour = int(ARCHIVE_PARTITIONS.start.timestamp() * 1000)
    materialized = _materialized_at(context.instance, closed_hours(streams, now_ms, first_hour))
    requests, notes = plan(streams, materialized, now_ms, maxlen, first_hour)
    for note in notes:
        context.log.warning(note)
    runs = [
        dg.RunRequest(
            run_key=r.run_key, partition_key=r.partition, tags={"ntplatform/archive_reason": r.reason}
        )
        for r in requests
    ]
    if runs:
        return dg.SensorResult(run_requests=runs)
    return dg.SensorResult(
        skip_reason=dg.SkipReason(
            "; ".join(notes) or f"{len(streams)} streams: every hour they hold is archived, none near its cap"
        )
    )

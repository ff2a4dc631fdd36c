"""Analyses of archived reports: what operators ask of an hour of one symbol. Pure: no I/O.

Input: the archive rows of one symbol (``ntplatform.archive`` schema, as dicts or a pandas
frame) and the hour they belong to. Times are the stream's (``ts_stream_ms``: Redis's clock
when the report was written), so node clock skew does not distort gaps or rates.

- publish rate: reports per second over the hour, and over the span actually covered
  (first to last report), which differs when the fleet started or stopped within the hour;
- data age percentiles (p50, p95, p99, max of ``data_age_ms``), nearest-rank;
- gaps: stretches without a report longer than ``gap_ms`` (default 2 s), including from
  the hour's start to the first report and from the last to the hour's end (``edges``);
- writer changes: consecutive reports from a different node or fencing token (fail-overs,
  rebalancing); ``token_regressions`` counts reports whose token is lower than an earlier one
  in the hour, which fencing must make impossible (writes refused by the fencing check are
  never archived: those conflicts are counted by ``nt_lease_conflicts_total``);
- spread (bps) and imbalance summaries: mean, median, p95 / min, max.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

DEFAULT_GAP_MS = 2000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Gap:
    start_ms: int
    end_ms: int

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class HourSummary:
    symbol: str
    hour_start_ms: int
    reports: int
    publish_rate_per_s: float  # over the whole hour
    active_rate_per_s: float | None  # over first..last report
    data_age_p50_ms: float | None
    data_age_p95_ms: float | None
    data_age_p99_ms: float | None
    data_age_max_ms: float | None
    gaps: int
    gap_total_ms: int
    longest_gap_ms: int
    writer_changes: int
    writers: str  # node ids in order of first appearance, comma-separated
    token_regressions: int
    spread_bps_mean: float | None
    spread_bps_median: float | None
    spread_bps_p95: float | None
    imbalance_1_mean: float | None
    imbalance_5_mean: float | None
    imbalance_5_min: float | None
    imbalance_5_max: float | None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100): the smallest value with at least q % at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def _ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def hour_end(hour_start_ms: int, now_ms: int | None = None) -> int:
    """The end of the hour's data: the hour's end, or ``now_ms`` while the hour is still open."""
    end = hour_start_ms + HOUR_MS
    return end if now_ms is None else max(hour_start_ms, min(end, now_ms))


def find_gaps(
    times_ms: Sequence[int], start_ms: int, end_ms: int, gap_ms: int, edges: bool = True
) -> list[Gap]:
    """Stretches longer than ``gap_ms`` (above 0) without a report within [start_ms, end_ms)."""
    if gap_ms <= 0:
        raise ValueError(f"gap_ms {gap_ms}: must be above 0 (every pause between reports would be a gap)")
    ordered = sorted(times_ms)
    points = [start_ms, *ordered, end_ms] if edges else ordered
    return [Gap(a, b) for a, b in itertools.pairwise(points) if b - a > gap_ms]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _present(rows: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name) is not None and not _is_nan(r[name])]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def summarize_hour(
    symbol: str,
    rows: Sequence[Mapping[str, Any]],
    hour_start_ms: int,
    gap_ms: int = DEFAULT_GAP_MS,
    edges: bool = True,
    end_ms: int | None = None,
) -> HourSummary:
    """The summary of one symbol's reports in the hour starting at ``hour_start_ms``.

    ``end_ms``: where the hour's data ends when it has not yet (an hour analysed while still
    open): time after it is not counted as a gap. The publish rate stays per whole hour.
    """
    ordered = sorted(rows, key=lambda r: (_ms(r["ts_stream_ms"]), str(r.get("stream_id"))))
    times = [_ms(r["ts_stream_ms"]) for r in ordered]
    gaps = find_gaps(times, hour_start_ms, hour_end(hour_start_ms, end_ms), gap_ms, edges)
    writers: list[str] = []
    changes = regressions = 0
    highest = None
    previous: tuple[Any, Any] | None = None
    for row in ordered:
        writer = (row.get("node_id"), row.get("fencing_token"))
        if row.get("node_id") not in writers:
            writers.append(str(row.get("node_id")))
        if previous is not None and writer != previous:
            changes += 1
        token = row.get("fencing_token")
        if token is not None and highest is not None and token < highest:
            regressions += 1
        highest = token if highest is None or (token is not None and token > highest) else highest
        previous = writer
    ages = _present(ordered, "data_age_ms")
    spreads = _present(ordered, "spread_bps")
    imbalance_5 = _present(ordered, "imbalance_5")
    span_s = (times[-1] - times[0]) / 1000 if len(times) > 1 else 0.0
    return HourSummary(
        symbol=symbol,
        hour_start_ms=hour_start_ms,
        reports=len(ordered),
        publish_rate_per_s=len(ordered) / (HOUR_MS / 1000),
        active_rate_per_s=(len(ordered) - 1) / span_s if span_s > 0 else None,
        data_age_p50_ms=percentile(ages, 50),
        data_age_p95_ms=percentile(ages, 95),
        data_age_p99_ms=percentile(ages, 99),
        data_age_max_ms=max(ages) if ages else None,
        gaps=len(gaps),
        gap_total_ms=sum(g.duration_ms for g in gaps),
        longest_gap_ms=max((g.duration_ms for g in gaps), default=0),
        writer_changes=changes,
        writers=",".join(writers),
        token_regressions=regressions,
        spread_bps_mean=_mean(spreads),
        spread_bps_median=percentile(spreads, 50),
        spread_bps_p95=percentile(spreads, 95),
        imbalance_1_mean=_mean(_present(ordered, "imbalance_1")),
        imbalance_5_mean=_mean(imbalance_5),
        imbalance_5_min=min(imbalance_5) if imbalance_5 else None,
        imbalance_5_max=max(imbalance_5) if imbalance_5 else None,
    )

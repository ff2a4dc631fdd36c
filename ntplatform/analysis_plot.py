"""The analysis plot of one archived hour: data age, spread and report gaps per symbol (PNG).

One row per symbol: data age (ms, left axis) and spread (bps, right axis) against time, with
the hour's gaps shaded. Rendered off-screen (matplotlib's Agg backend) to PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ntplatform.analysis import HOUR_MS, HourSummary, find_gaps, hour_end


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def plot_hour(
    rows_by_symbol: Mapping[str, Sequence[Mapping[str, Any]]],
    summaries: Sequence[HourSummary],
    hour_start_ms: int,
    gap_ms: int,
    end_ms: int | None = None,
) -> bytes:
    """Data age and spread per symbol over the hour, gaps shaded; after ``end_ms`` (an open hour's
    present) the plot is left blank and the title says the hour is still open."""
    end = hour_end(hour_start_ms, end_ms)
    symbols = [s.symbol for s in summaries]
    figure, axes = plt.subplots(
        max(1, len(symbols)), 1, figsize=(11, 2.6 * max(1, len(symbols))), squeeze=False
    )
    for axis, summary in zip(axes[:, 0], summaries, strict=False):
        rows = sorted(rows_by_symbol.get(summary.symbol, []), key=lambda r: r["ts_stream_ms"])
        times = [r["ts_stream_ms"] for r in rows]
        axis.plot(
            times, [r["data_age_ms"] for r in rows], color="tab:blue", linewidth=0.8, label="data age (ms)"
        )
        axis.set_ylabel("data age ms", color="tab:blue")
        spread_axis = axis.twinx()
        spread_axis.plot(
            times, [r["spread_bps"] for r in rows], color="tab:orange", linewidth=0.6, label="spread"
        )
        spread_axis.set_ylabel("spread bps", color="tab:orange")
        stamps = [int(t.timestamp() * 1000) for t in times]
        for gap in find_gaps(stamps, hour_start_ms, end, gap_ms):
            axis.axvspan(_time(gap.start_ms), _time(gap.end_ms), color="tab:red", alpha=0.15, linewidth=0)
        axis.set_xlim(_time(hour_start_ms), _time(hour_start_ms + HOUR_MS))
        axis.set_title(
            f"{summary.symbol}: {summary.reports} reports, data age p95 {summary.data_age_p95_ms} ms, "
            f"{summary.gaps} gaps (longest {summary.longest_gap_ms / 1000:.1f} s), "
            f"{summary.writer_changes} writer changes",
            fontsize=9,
        )
    still_open = f", open: data up to {_time(end):%H:%M:%S}" if end < hour_start_ms + HOUR_MS else ""
    figure.suptitle(
        f"archive {_time(hour_start_ms):%Y-%m-%d %H:00} UTC{still_open} (red: no report for > {gap_ms} ms)"
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()

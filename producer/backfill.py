"""Backfill: recordings through NautilusTrader's backtest engine with the live analytics actor.

``ntplatform backfill RECORDING... --out DIR`` (or the Dagster asset ``report_backfill``)
loads each recording (``ntplatform.replay.recording``: the same validation as the replay
exchange), converts it to NautilusTrader data (``producer.recorded_data``), and runs it
through a ``BacktestEngine`` holding the very ``AnalyticsActor`` the producers run. The
engine's simulated clock drives the fast and slow cycles at ``NT_REPORT_PERIOD_MS`` and
``NT_SLOW_PERIOD_MS``; no live clock, no Redis. Reports go to a :class:`ParquetSink` instead
of the Redis publisher and are written with the archive's schema (``ntplatform.archive``),
one hive partition per symbol and hour of simulated publication time, ``node_id``
``backfill``, fencing token 0, ``seq`` from 1, ``stream_id`` ``{ts_published_ms}-{n}``.

Progress: a second actor on the same simulated clock reports how far the run has got every
1 % of the recordings' span.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.common.actor import Actor
from nautilus_trader.common.config import LoggingConfig
from nautilus_trader.common.events import TimeEvent
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.enums import AccountType, BookType, OmsType
from nautilus_trader.model.objects import Money

from ntplatform import archive
from ntplatform.errors import ConfigError, OutputConflictError, RecordingError
from ntplatform.logs import EventLog
from ntplatform.replay.exchange_info import EXCHANGE_INFO_FILES, default_http_dir
from ntplatform.replay.recording import Recording, load_recordings
from producer.actor import AnalyticsActor, AnalyticsActorConfig, Runtime
from producer.health import NodeState
from producer.metrics import ProducerMetrics
from producer.recorded_data import VENUE, load_instrument, timeline

NODE_ID = "backfill"
MARKET_FOLDER = "market"  # backfills go under market=spot/ or market=usdm/: one symbol, two books
SOURCE_KEY = b"ntplatform.recording"  # file metadata: the recording a backfilled file came from


@dataclass
class ParquetSink:
    """The actor's report outlet in a backfill: keeps every report, stamped like the publisher does."""

    symbols: list[str]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _seq: dict[str, int] = field(default_factory=dict)
    _last_ms: tuple[int, int] = (0, 0)  # (ms, entries in it): stream ids as Redis would make them

    def set_available(self, symbols: list[str]) -> None:
        self.symbols = list(symbols)

    def target_symbols(self) -> list[str]:
        return list(self.symbols)

    def submit(self, reports: dict[str, dict[str, Any]]) -> None:
        for symbol, report in sorted(reports.items()):
            seq = self._seq.get(symbol, 0) + 1
            self._seq[symbol] = seq
            published = int(report["ts_published_ms"])
            n = self._last_ms[1] if self._last_ms[0] == published else 0
            self._last_ms = (published, n + 1)
            stamped = {**report, "node_id": NODE_ID, "fencing_token": 0, "seq": seq}
            self.rows[symbol].append(archive.flatten_report(f"{published}-{n}", stamped))

    def hand_over(self) -> None:
        pass

    def watch_target(self, callback: Callable[[list[str]], None]) -> None:
        pass  # every symbol, from start to end

    def on_resubscribe(self, callback: Callable[[str], bool]) -> None:
        pass  # nothing to resubscribe to

    def count(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def write(self, root: str, market: str, sources: dict[str, str]) -> list[str]:
        """Write each symbol's reports under ``market=MARKET/``, one file per hour of publication.

        ``sources`` names each symbol's recording; it is stored in the files. A file that holds
        another recording's reports is never replaced: OutputConflictError before anything is written.
        """
        prefix = f"{MARKET_FOLDER}={market}"
        planned = []
        for symbol, rows in sorted(self.rows.items()):
            by_hour: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                published: datetime = row["ts_published_ms"]
                by_hour[published.replace(minute=0, second=0, microsecond=0)].append(row)
            planned += [(symbol, hour, hour_rows) for hour, hour_rows in sorted(by_hour.items())]
        for symbol, hour, _ in planned:
            held = archive.partition_metadata(root, symbol, hour, prefix).get(SOURCE_KEY, b"").decode()
            if held and held != sources[symbol]:
                where = f"{prefix}/{archive.partition_relpath(symbol, hour)}"
                raise OutputConflictError(
                    f"{root}: {where} holds reports backfilled from {held}, not {sources[symbol]}; "
                    "nothing was written (backfill into another folder, or remove that file to replace it)"
                )
        return [
            archive.write_partition(
                root,
                symbol,
                hour,
                archive.rows_to_table(hour_rows),
                prefix,
                {SOURCE_KEY: sources[symbol].encode()},
            )
            for symbol, hour, hour_rows in planned
        ]


@dataclass(frozen=True)
class BackfillSettings:
    report_period_ms: int = 250
    slow_period_ms: int = 2000
    book_depth: int = 20
    trade_window_min: int = 30


@dataclass(frozen=True)
class BackfillResult:
    reports: int
    paths: list[str]
    messages: int
    simulated_s: float
    wall_s: float

    @property
    def speedup(self) -> float:
        return self.simulated_s / self.wall_s if self.wall_s > 0 else 0.0


Progress = Callable[[int, int], None]  # (simulated ns done, simulated ns in all)
PROGRESS_STEPS = 100


class ProgressActor(Actor):
    """Reports the simulated time reached, every 1 % of the span, on the engine's clock."""

    def __init__(self, first_ns: int, last_ns: int, progress: Progress) -> None:
        super().__init__()
        self._first_ns, self._span_ns = first_ns, max(1, last_ns - first_ns)
        self._progress = progress

    def on_start(self) -> None:
        step = dt.timedelta(microseconds=max(1, self._span_ns // PROGRESS_STEPS // 1000))
        self.clock.set_timer("backfill_progress", step, callback=self._tick)

    def _tick(self, event: TimeEvent) -> None:
        done = min(self._span_ns, event.ts_event - self._first_ns)
        if done < self._span_ns:
            self._progress(done, self._span_ns)

    def on_stop(self) -> None:
        if "backfill_progress" in self.clock.timer_names:
            self.clock.cancel_timer("backfill_progress")


def backfill(
    recordings: list[Recording],
    out: str,
    settings: BackfillSettings = BackfillSettings(),
    http_dir: Path | None = None,
    progress: Progress = lambda done, total: None,
) -> BackfillResult:
    """Run ``recordings`` (one market) through the backtest engine; write the reports under ``out``."""
    if not recordings:
        raise RecordingError("", None, "no recording given")
    started = time.perf_counter()
    http = http_dir or default_http_dir([r.path for r in recordings])
    instruments = [load_instrument(http, r) for r in recordings]
    per_instrument = [list(timeline(r, i)) for r, i in zip(recordings, instruments, strict=True)]
    first_ns = min(items[0].ts_init for items in per_instrument)
    last_ns = max(items[-1].ts_init for items in per_instrument)
    total = sum(len(items) for items in per_instrument)
    engine = BacktestEngine(
        BacktestEngineConfig(trader_id="BACKFILL-001", logging=LoggingConfig(log_level="ERROR"))
    )
    engine.add_venue(
        venue=VENUE,
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        starting_balances=[Money(Decimal(1), USDT)],
        book_type=BookType.L2_MBP,
    )
    for instrument in instruments:
        engine.add_instrument(instrument)
    sink = ParquetSink([r.symbol for r in recordings])
    actor = AnalyticsActor(
        AnalyticsActorConfig(
            instrument_ids=tuple(str(i.id) for i in instruments),
            report_period_ms=settings.report_period_ms,
            slow_period_ms=settings.slow_period_ms,
            book_depth=settings.book_depth,
            trade_window_min=settings.trade_window_min,
        )
    )
    log = EventLog("backfill", "warning")
    actor.bind(Runtime(sink, ProducerMetrics(), NodeState(NODE_ID, False), log))
    engine.add_actor(actor)
    engine.add_actor(ProgressActor(first_ns, last_ns, progress))
    for items in per_instrument:  # each list starts with its book snapshot (the engine checks)
        engine.add_data(items)
    engine.run()
    engine.dispose()
    progress(last_ns - first_ns, last_ns - first_ns)
    paths = sink.write(out, recordings[0].market, {r.symbol: r.path.name for r in recordings})
    simulated_s = (last_ns - first_ns) / 1e9
    return BackfillResult(sink.count(), paths, total, simulated_s, time.perf_counter() - started)


# -- command line -------------------------------------------------------------------------------

# The live ranges (NT_REPORT_PERIOD_MS, NT_SLOW_PERIOD_MS in ntplatform/settings.py), for the
# CLI and the asset alike: below 10 ms or above the int64 nanoseconds NautilusTrader's timers
# take, the engine fails deep inside (``'interval_ns' not a positive integer``).
REPORT_PERIOD_MS = (10, 60_000)
SLOW_PERIOD_MAX_MS = 3_600_000


def period_problem(report_ms: int, slow_ms: int, report_name: str, slow_name: str) -> str | None:
    """What is wrong with the two cycle periods (named as the caller's user knows them), if anything."""
    low, high = REPORT_PERIOD_MS
    if not low <= report_ms <= high:
        return f"{report_name} {report_ms}: must be from {low} to {high} (ms)"
    if slow_ms != 0 and not report_ms <= slow_ms <= SLOW_PERIOD_MAX_MS:
        return (
            f"{slow_name} {slow_ms}: must be 0 (off) or from {report_name} ({report_ms}) "
            f"to {SLOW_PERIOD_MAX_MS} (ms)"
        )
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING", help="*.gz files or folders")
    parser.add_argument(
        "--out", required=True, help="archive root: a folder or a URI such as s3://bucket/path"
    )
    parser.add_argument("--report-period-ms", type=int, default=250, help="fast cycle period (default 250)")
    parser.add_argument(
        "--slow-period-ms", type=int, default=2000, help="slow cycle period, 0 = off (default 2000)"
    )
    parser.add_argument(
        "--http-dir", type=Path, help="recorded REST answers (default: ../http beside the recordings)"
    )


def _bar(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total)
    print(
        f"\rbackfill [{'#' * filled}{'.' * (width - filled)}] {100 * done / total:5.1f}% "
        f"{done / 1e9:.0f} of {total / 1e9:.0f} s of market time",
        end="" if done < total else "\n",
        file=sys.stderr,
        flush=True,
    )


def _input_problem(args: argparse.Namespace) -> str | None:
    problem = period_problem(
        args.report_period_ms, args.slow_period_ms, "--report-period-ms", "--slow-period-ms"
    )
    if problem:
        return problem
    if args.http_dir is not None and not args.http_dir.is_dir():
        return (
            f"--http-dir {args.http_dir}: not a folder; give the folder of recorded REST answers "
            "(exchangeInfo)"
        )
    try:  # before the replay, which can take minutes: its reports would have nowhere to go
        archive.check_root(args.out, "--out")
    except ConfigError as error:
        return f"--out {error.value}: {error.allowed}"
    return None


def _http_dir_problem(http_dir: Path | None, recordings: list[Recording]) -> str | None:
    """The recorded exchangeInfo each recording's instrument is built from, where it is missing."""
    folder = http_dir or default_http_dir([r.path for r in recordings])
    missing = sorted(
        {f for f in (EXCHANGE_INFO_FILES[r.market] for r in recordings) if not (folder / f).is_file()}
    )
    if not missing:
        return None
    named = f"--http-dir {http_dir}" if http_dir else f"{folder} (the http folder beside the recordings)"
    return (
        f"{named}: has no {', '.join(missing)}; give --http-dir the folder of recorded REST answers "
        "holding the exchangeInfo of the recordings' market"
    )


def run(args: argparse.Namespace) -> int:
    problem = _input_problem(args)
    if problem:
        print(f"ntplatform backfill: {problem}", file=sys.stderr)
        return 2
    try:
        recordings = load_recordings(args.recordings)
        problem = _http_dir_problem(args.http_dir, recordings)
        if problem:
            print(f"ntplatform backfill: {problem}", file=sys.stderr)
            return 2
        print(
            f"backfill: {len(recordings)} recording(s): {', '.join(r.symbol for r in recordings)}",
            file=sys.stderr,
        )
        result = backfill(
            recordings,
            args.out,
            BackfillSettings(args.report_period_ms, args.slow_period_ms),
            args.http_dir,
            _bar,
        )
    except (RecordingError, OutputConflictError) as error:
        print(f"ntplatform backfill: {error}", file=sys.stderr)
        return 2
    print(
        f"backfill: {result.reports} reports from {result.messages} events ({result.simulated_s:.0f} s of "
        f"market time) in {result.wall_s:.1f} s ({result.speedup:.0f}x real time); files:",
        file=sys.stderr,
    )
    for path in result.paths:
        print(path)
    return 0

"""Backfill through NautilusTrader's backtest engine, checked against the exchange's own data.

- best bid and ask of every backfilled report whose ``book_update_id`` the exchange published
  a ``bookTicker`` for equal that ``bookTicker`` (spot and USDⓈ-M);
- the slow cycle's trade count, volume, buy volume and VWAP equal a computation straight
  from the recording's raw trade lines (read here with plain ``gzip`` and ``json``);
- ``ntplatform backfill`` shows progress, writes the archive's Parquet layout and refuses
  bad input with one line.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from ntplatform.archive import ARCHIVE_SCHEMA
from ntplatform.replay.recording import load_recordings
from producer.backfill import BackfillSettings, backfill
from tests.conftest import PYTHON, SHARED_DATA, python_env
from tests.integration.dagster_runs import failure_description
from tests.integration.recordings import book_tickers

pytestmark = pytest.mark.integration
SPOT = SHARED_DATA / "spot" / "btcusdt_20240808.gz"
USDM = SHARED_DATA / "usdm" / "btcusdt_20240808.gz"


def _rows(root: Path, symbol: str = "BTCUSDT", market: str = "spot") -> list[dict]:
    folder = root / f"market={market}" / f"symbol={symbol}"
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pylist()


@pytest.fixture(scope="module")
def spot_rows(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("spot")
    backfill(load_recordings([SPOT]), str(out), BackfillSettings(report_period_ms=100, slow_period_ms=1000))
    return _rows(out)


@pytest.mark.parametrize("recording", [SPOT, USDM], ids=["spot", "usdm"])
def test_backfilled_best_bid_and_ask_equal_the_exchange_book_ticker(recording: Path, tmp_path: Path) -> None:
    result = backfill(load_recordings([recording]), str(tmp_path), BackfillSettings(report_period_ms=50))
    rows = _rows(tmp_path, market=recording.parent.name)
    assert len(rows) == result.reports
    tickers = book_tickers(recording)
    matched = [r for r in rows if r["book_update_id"] in tickers]
    wrong = [r for r in matched if (r["best_bid"], r["best_ask"]) != tickers[r["book_update_id"]]]
    print(
        f"{recording.parent.name}: {len(matched)} of {len(rows)} reports at a bookTicker id,",
        f"{len(wrong)} differ",
    )
    assert wrong == []
    assert len(matched) >= 100
    # About one report per period over the recording's span: the simulated clock drove the cycles.
    assert abs(result.reports - result.simulated_s * 1000 / 50) <= 0.01 * result.reports + 5
    assert result.speedup > 1


def _raw_trades(recording: Path) -> list[tuple[int, float, float, bool]]:
    """(receive ms, price, quantity, buyer is maker) of every trade after the snapshot line."""
    trades, after_snapshot = [], False
    with gzip.open(recording, "rt") as lines:
        for line in lines:
            stamp, _, body = line.partition(" ")
            message = json.loads(body)
            after_snapshot = after_snapshot or "lastUpdateId" in message
            if after_snapshot and message.get("stream", "").endswith("@trade"):
                data = message["data"]
                trades.append((int(stamp) // 1_000_000, float(data["p"]), float(data["q"]), data["m"]))
    return trades


def test_slow_cycle_volume_and_vwap_equal_a_computation_from_the_raw_trades(spot_rows: list[dict]) -> None:
    trades = _raw_trades(SPOT)
    checked = 0
    for row in spot_rows:
        if row["slow_ts_ms"] is None:
            continue
        at = int(row["slow_ts_ms"].timestamp() * 1000)
        if any(abs(ms - at) <= 1 for ms, *_ in trades):
            continue  # a trade in the same millisecond as the cycle: order not defined by the data
        window = [t for t in trades if at - 30 * 60_000 <= t[0] <= at]
        volume = sum(q for _, _, q, _ in window)
        buy_volume = sum(q for _, _, q, maker in window if not maker)  # buyer was the aggressor
        assert row["slow_trade_count"] == len(window)
        assert row["slow_volume"] == pytest.approx(volume, rel=1e-9)
        assert row["slow_buy_volume"] == pytest.approx(buy_volume, rel=1e-9)
        if volume:
            vwap = sum(p * q for _, p, q, _ in window) / volume
            assert row["slow_vwap"] == pytest.approx(vwap, rel=1e-9)
        checked += 1
    assert checked >= 200, f"only {checked} slow summaries could be checked"


def test_backfill_reports_are_numbered_and_typed_like_the_archive(
    spot_rows: list[dict], tmp_path: Path
) -> None:
    assert [r["seq"] for r in spot_rows] == list(range(1, len(spot_rows) + 1))
    assert {r["node_id"] for r in spot_rows} == {"backfill"}
    assert len({r["stream_id"] for r in spot_rows}) == len(spot_rows)
    published = [r["ts_published_ms"] for r in spot_rows]
    assert published == sorted(published)
    assert all(r["data_age_ms"] >= 0 for r in spot_rows)


def _backfill_cli(*argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "ntplatform.cli", "backfill", *argv],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_cli_shows_progress_writes_parquet_and_refuses_bad_input(tmp_path: Path) -> None:
    done = _backfill_cli(str(USDM), "--out", str(tmp_path / "out"), timeout_s=300)
    assert done.returncode == 0, done.stderr
    assert "100.0%" in done.stderr
    assert "x real time" in done.stderr
    (path,) = done.stdout.split()
    assert "market=usdm/symbol=BTCUSDT/date=2024-08-08/hour=" in path
    table = pq.read_table(path)
    assert table.schema.equals(ARCHIVE_SCHEMA, check_metadata=False)
    assert table.schema.metadata[b"ntplatform.archive_schema_version"] == b"1"

    missing = _backfill_cli(str(tmp_path / "nope.gz"), "--out", str(tmp_path))
    assert missing.returncode == 2
    assert "nope.gz" in missing.stderr
    assert "no such file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    no_http = _backfill_cli(str(USDM), "--out", str(tmp_path), "--http-dir", "/nonexistent")
    assert no_http.returncode == 2
    assert no_http.stderr.splitlines() == [
        "ntplatform backfill: --http-dir /nonexistent: not a folder; give the folder of recorded REST "
        "answers (exchangeInfo)"
    ]

    empty = tmp_path / "empty-http"
    empty.mkdir()
    no_info = _backfill_cli(str(USDM), "--out", str(tmp_path), "--http-dir", str(empty))
    assert no_info.returncode == 2
    assert no_info.stderr.splitlines() == [
        f"ntplatform backfill: --http-dir {empty}: has no usdm_exchange_info.json; give --http-dir the "
        "folder of recorded REST answers holding the exchangeInfo of the recordings' market"
    ]


def test_spot_and_usdm_backfills_of_one_symbol_keep_apart_and_another_recording_is_never_overwritten(
    tmp_path: Path,
) -> None:
    spot_copy = tmp_path / "recordings" / "spot" / "btcusdt_copy.gz"
    spot_copy.parent.mkdir(parents=True)
    spot_copy.write_bytes(SPOT.read_bytes())
    for market, recording in (("usdm", USDM), ("spot", SPOT)):
        done = _backfill_cli(str(recording), "--out", str(tmp_path / "out"), timeout_s=300)
        assert done.returncode == 0, done.stderr
        assert all(f"/market={market}/symbol=BTCUSDT/" in path for path in done.stdout.split())
    usdm_rows, spot_rows = _rows(tmp_path / "out", market="usdm"), _rows(tmp_path / "out", market="spot")
    # The same recordings again: the files are replaced by the same reports (idempotent).
    again = _backfill_cli(str(SPOT), "--out", str(tmp_path / "out"), timeout_s=300)
    assert again.returncode == 0, again.stderr
    assert len(_rows(tmp_path / "out", market="spot")) == len(spot_rows)

    # Another recording of the same market, symbol and hours: refused, nothing replaced.
    other = _backfill_cli(
        str(spot_copy), "--out", str(tmp_path / "out"), "--http-dir", str(SHARED_DATA / "http"), timeout_s=300
    )
    assert other.returncode == 2
    (line,) = other.stderr.splitlines()[-1:]
    assert line.startswith(
        f"ntplatform backfill: {tmp_path / 'out'}: market=spot/symbol=BTCUSDT/date=2024-08-08/"
    )
    assert (
        "holds reports backfilled from btcusdt_20240808.gz, not btcusdt_copy.gz; nothing was written" in line
    )
    assert _rows(tmp_path / "out", market="spot") == spot_rows
    assert _rows(tmp_path / "out", market="usdm") == usdm_rows
    assert {r["book_update_id"] for r in usdm_rows}.isdisjoint({r["book_update_id"] for r in spot_rows})


@pytest.mark.parametrize("out", ["/proc/nope", "a-file", "ftp://x/y"])
def test_cli_refuses_an_out_it_cannot_write_before_the_replay_starts(tmp_path: Path, out: str) -> None:
    afile = tmp_path / "a-file"
    afile.write_bytes(b"kept")
    if out == "a-file":
        out = str(afile)
    refused = _backfill_cli(str(USDM), "--out", out)
    expected = {
        "/proc/nope": "cannot create the folder (No such file or directory)",
        str(afile): f"it is a file ({afile}); a folder is needed",
        "ftp://x/y": "scheme ftp:// is not supported; use a local folder, file:///absolute/path, "
        "or a URI such as s3://bucket/prefix (also gs, abfs, hdfs)",
    }
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [f"ntplatform backfill: --out {out}: {expected[out]}"]  # no replay
    assert refused.stdout == ""
    assert afile.read_bytes() == b"kept"


@pytest.mark.parametrize(
    ("periods", "says"),
    [
        ({"report_period_ms": 0}, "report_period_ms 0: must be from 10 to 60000 (ms)"),
        ({"report_period_ms": 60_001}, "report_period_ms 60001: must be from 10 to 60000 (ms)"),
        (
            {"slow_period_ms": 100},
            "slow_period_ms 100: must be 0 (off) or from report_period_ms (250) to 3600000 (ms)",
        ),
        (
            {"slow_period_ms": -1},
            "slow_period_ms -1: must be 0 (off) or from report_period_ms (250) to 3600000 (ms)",
        ),
    ],
)
def test_dagster_backfill_asset_refuses_periods_out_of_range_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, periods: dict[str, int], says: str
) -> None:
    import dagster as dg

    from assets.backfill import report_backfill

    monkeypatch.setenv("NT_BACKFILL_DIR", str(tmp_path / "out"))
    result = dg.materialize(
        [report_backfill],
        partition_key="spot/ethusdt_20240808",
        run_config={"ops": {"report_backfill": {"config": periods}}},
        raise_on_error=False,
    )
    assert failure_description(result) == f"report_backfill config {says}"
    assert not (tmp_path / "out").exists()


def test_dagster_backfill_asset_refuses_a_backfill_dir_that_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from assets.backfill import report_backfill

    afile = tmp_path / "a-file"
    afile.write_bytes(b"kept")
    monkeypatch.setenv("NT_BACKFILL_DIR", str(afile))
    result = dg.materialize([report_backfill], partition_key="spot/ethusdt_20240808", raise_on_error=False)
    assert failure_description(result) == (
        f"invalid configuration: NT_BACKFILL_DIR='{afile}': it is a file ({afile}); a folder is needed"
    )
    assert afile.read_bytes() == b"kept"


def test_dagster_backfill_asset_over_recording_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from assets.backfill import RECORDING_PARTITIONS, report_backfill

    assert {"spot/btcusdt_20240808", "usdm/btcusdt_20240808"} <= set(
        RECORDING_PARTITIONS.get_partition_keys()
    )
    monkeypatch.setenv("NT_BACKFILL_DIR", str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([report_backfill], partition_key="spot/ethusdt_20240808", instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("report_backfill")
    assert materialization.metadata["reports"].value == len(_rows(tmp_path, "ETHUSDT"))
    assert materialization.metadata["speedup_x_real_time"].value > 1
    logged = [e.user_message for e in instance.all_logs(result.run_id) if "% (" in e.user_message]
    assert any("100%" in m for m in logged), logged

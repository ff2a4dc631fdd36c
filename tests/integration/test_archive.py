"""``report_archive`` against a real Redis: exact rows, idempotent re-runs, detected loss."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest

from assets.archive import CHECK_NAME, report_archive
from assets.resources import ArchiveStorageResource, RedisResource
from ntplatform import keys
from tests.archive_samples import HOUR_START_MS, PARTITION_KEY, sample_report
from tests.conftest import RedisProcess
from tests.integration.dagster_runs import failure_description

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000
PART = "date=2026-12-03/hour=14/part.parquet"


def _xadd(server: RedisProcess, symbol: str, entries: list[tuple[int, dict[str, Any]]]) -> None:
    client = server.client()
    for ms, report in entries:
        client.xadd(keys.stream_key(symbol), {keys.REPORT_FIELD: orjson.dumps(report)}, id=f"{ms}-*")


def _materialize(
    server: RedisProcess, root: Path | str, partition: str = PARTITION_KEY, **config: Any
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [report_archive],
        partition_key=partition,
        resources={
            "redis_db": RedisResource(url=server.url),
            "archive_storage": ArchiveStorageResource(root=str(root)),
        },
        run_config={"ops": {"report_archive": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == CHECK_NAME
    return evaluation


def test_archive_writes_exactly_the_hour_and_is_idempotent(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    before = [(HOUR_START_MS - 1, sample_report(1))]
    times = [HOUR_START_MS + i * 250 for i in range(2500)]
    inside = [(ms, sample_report(2 + i, ts_ms=ms)) for i, ms in enumerate(times)]
    after = [(HOUR_START_MS + HOUR_MS, sample_report(2502))]
    _xadd(redis_server, "BTCUSDT", before + inside + after)
    _xadd(redis_server, "ETHUSDT", [(HOUR_START_MS + 10, sample_report(1, symbol="ETHUSDT", slow=False))])

    result = _materialize(redis_server, tmp_path, page_size=300)  # several XRANGE pages
    assert result.success
    [materialization] = result.asset_materializations_for_node("report_archive")
    assert materialization.metadata["rows_per_symbol"].value == {"BTCUSDT": 2500, "ETHUSDT": 1}
    assert materialization.metadata["rows"].value == 2501
    assert _check(result).passed

    table = pq.read_table(tmp_path / "symbol=BTCUSDT" / PART)
    assert table.num_rows == 2500
    assert table.column("seq").to_pylist() == list(range(2, 2502))
    assert table.column("stream_id").to_pylist()[:2] == [f"{HOUR_START_MS}-0", f"{HOUR_START_MS + 250}-0"]
    first = table.slice(0, 1).to_pylist()[0]
    expected = sample_report(2)
    assert first["best_bid"] == expected["best_bid"]
    assert first["slow_vwap"] == expected["slow"]["vwap"]
    assert first["ts_published_ms"] == pd.Timestamp(HOUR_START_MS, unit="ms", tz="UTC")
    eth = pq.read_table(tmp_path / "symbol=ETHUSDT" / PART).to_pylist()
    assert len(eth) == 1
    assert eth[0]["slow_vwap"] is None

    again = _materialize(redis_server, tmp_path)
    assert again.success
    assert pq.read_table(tmp_path / "symbol=BTCUSDT" / PART).equals(table)

    # the whole layout reads back as one frame, symbol restored from the path
    frame = pd.read_parquet(tmp_path)
    assert len(frame) == 2501
    assert frame.groupby("symbol", observed=True).size().to_dict() == {"BTCUSDT": 2500, "ETHUSDT": 1}


def test_configured_symbols_limit_the_run_and_missing_streams_give_empty_files(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYMBOLS", "BTCUSDT,SOLUSDT")  # SOLUSDT is the fleet's: "archived, nothing there"
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + 1, sample_report(1))])
    result = _materialize(redis_server, tmp_path, symbols=["solusdt"])
    assert result.success
    assert _check(result).passed
    assert pq.read_table(tmp_path / "symbol=SOLUSDT" / PART).num_rows == 0
    assert not (tmp_path / "symbol=BTCUSDT").exists()


def test_configured_symbol_unknown_to_redis_and_symbols_is_skipped_with_a_warning(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYMBOLS", "BTCUSDT")
    _xadd(redis_server, "ETHUSDT", [(HOUR_START_MS + 1, sample_report(1, symbol="ETHUSDT"))])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [report_archive],
        partition_key=PARTITION_KEY,
        instance=instance,
        resources={
            "redis_db": RedisResource(url=redis_server.url),
            "archive_storage": ArchiveStorageResource(root=str(tmp_path)),
        },
        run_config={"ops": {"report_archive": {"config": {"symbols": ["btcusd", "ethusdt"]}}}},
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node("report_archive")
    assert materialization.metadata["skipped_symbols"].value == ["BTCUSD"]
    assert materialization.metadata["rows_per_symbol"].value == {"ETHUSDT": 1}  # not in SYMBOLS, has a stream
    assert not (tmp_path / "symbol=BTCUSD").exists()
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any(m.startswith("BTCUSD: no report:stream:BTCUSD in Redis and not in SYMBOLS") for m in warnings)


@pytest.mark.parametrize("symbol", ["nope!!", "", "B", "BTC/USDT", "A" * 21])
def test_malformed_configured_symbol_fails_in_one_line_and_writes_nothing(
    redis_server: RedisProcess, tmp_path: Path, symbol: str
) -> None:
    result = _materialize(redis_server, tmp_path, symbols=["BTCUSDT", symbol])
    assert failure_description(result) == (
        f"report_archive config symbols: {symbol!r}: symbol {symbol.upper()!r} must be 2-20 letters or "
        "digits, e.g. BTCUSDT"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("page_size", [0, -1, 100_001])
def test_page_size_out_of_range_fails_in_one_line(
    redis_server: RedisProcess, tmp_path: Path, page_size: int
) -> None:
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + 1, sample_report(1))])
    result = _materialize(redis_server, tmp_path, page_size=page_size)
    assert failure_description(result) == (
        f"report_archive config page_size={page_size}: must be an integer from 1 to 100000"
    )
    assert list(tmp_path.iterdir()) == []


def test_archive_dir_that_cannot_hold_the_archive_fails_naming_nt_archive_dir(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + 1, sample_report(1))])
    afile = tmp_path / "a-file"
    afile.write_bytes(b"kept")
    expected = {
        "/proc/nope": "invalid configuration: NT_ARCHIVE_DIR='/proc/nope': cannot create the folder "
        "(No such file or directory)",
        str(afile): f"invalid configuration: NT_ARCHIVE_DIR='{afile}': it is a file ({afile}); "
        "a folder is needed",
        "ftp://x/y": "invalid configuration: NT_ARCHIVE_DIR='ftp://x/y': scheme ftp:// is not supported; "
        "use a local folder, file:///absolute/path, or a URI such as s3://bucket/prefix "
        "(also gs, abfs, hdfs)",
    }
    for root, message in expected.items():
        assert failure_description(_materialize(redis_server, root)) == message
    assert afile.read_bytes() == b"kept"


def test_trimmed_stream_fails_the_check_and_counts_the_loss(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    previous = "2026-12-03-13:00"
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS - 1000, sample_report(1))])
    assert _check(_materialize(redis_server, tmp_path, previous)).passed
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + i, sample_report(2 + i)) for i in range(20)])
    redis_server.client().xtrim(keys.stream_key("BTCUSDT"), maxlen=15, approximate=False)

    result = _materialize(redis_server, tmp_path)
    assert result.success  # the data that is left is archived; the check reports the loss
    check = _check(result)
    assert not check.passed
    assert check.metadata["lost"].value == 5
    assert "BTCUSDT: 5 reports lost before archiving" in (check.description or "")
    assert pq.read_table(tmp_path / "symbol=BTCUSDT" / PART).num_rows == 15


def test_rerun_after_trimming_keeps_rows_archived_before(redis_server: RedisProcess, tmp_path: Path) -> None:
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + i, sample_report(1 + i)) for i in range(10)])
    assert _check(_materialize(redis_server, tmp_path)).passed
    redis_server.client().xtrim(keys.stream_key("BTCUSDT"), maxlen=4, approximate=False)

    result = _materialize(redis_server, tmp_path)
    assert _check(result).passed
    table = pq.read_table(tmp_path / "symbol=BTCUSDT" / PART)
    assert table.column("seq").to_pylist() == list(range(1, 11))


def test_redis_losing_its_data_after_archiving_keeps_the_rows_and_fails_the_check(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    """Archived, then Redis restarts empty and a writer with no memory starts again at seq 1."""
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + i, sample_report(1 + i)) for i in range(10)])
    assert _check(_materialize(redis_server, tmp_path)).passed
    redis_server.client().flushall()  # reports 11.. written after the archive run are gone too
    _xadd(redis_server, "BTCUSDT", [(HOUR_START_MS + 60_000 + i, sample_report(1 + i)) for i in range(5)])

    result = _materialize(redis_server, tmp_path)
    assert result.success
    check = _check(result)
    assert not check.passed
    assert "BTCUSDT: seq went back 1 time (first from 10 to 1): Redis lost its data" in (
        check.description or ""
    )
    table = pq.read_table(tmp_path / "symbol=BTCUSDT" / PART)
    assert table.column("seq").to_pylist() == [*range(1, 11), *range(1, 6)]  # nothing archived is lost
    assert table.column("stream_id").to_pylist() == sorted(
        table.column("stream_id").to_pylist(), key=lambda i: tuple(map(int, i.split("-")))
    )


def test_ahead_of_trim_sensor_requests_unarchived_hours_and_at_risk_streams(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensors.archive import archive_ahead_of_trim_sensor

    seconds, _ = redis_server.client().time()
    now_ms = int(seconds) * 1000
    open_hour = now_ms // HOUR_MS * HOUR_MS
    _xadd(
        redis_server,
        "BTCUSDT",
        [(open_hour - 2 * HOUR_MS + 10, sample_report(1)), (open_hour + 5, sample_report(2))],
    )
    monkeypatch.setenv("NT_STREAM_MAXLEN", "100000")
    resources = {"redis_db": RedisResource(url=redis_server.url)}
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = archive_ahead_of_trim_sensor(context)
        keys_asked = [r.partition_key for r in result.run_requests]
        two_ago, one_ago = (
            datetime.fromtimestamp((open_hour - n * HOUR_MS) / 1000, UTC).strftime("%Y-%m-%d-%H:00")
            for n in (2, 1)
        )
        assert keys_asked == [two_ago, one_ago]  # closed hours since the oldest entry; not the open one
        assert [r.run_key for r in result.run_requests] == [f"archive:{two_ago}", f"archive:{one_ago}"]

        dg.materialize(
            [report_archive],
            partition_key=two_ago,
            instance=instance,
            resources={**resources, "archive_storage": ArchiveStorageResource(root=str(tmp_path))},
        )
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            assert [r.partition_key for r in archive_ahead_of_trim_sensor(context).run_requests] == [one_ago]

        monkeypatch.setenv("NT_STREAM_MAXLEN", "2")  # two entries of at most ~2: about to be trimmed
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            at_risk = archive_ahead_of_trim_sensor(context)
        assert [r.partition_key for r in at_risk.run_requests] == [two_ago, one_ago]
        assert at_risk.run_requests[0].run_key.startswith(f"archive-ahead:{two_ago}:")
        assert at_risk.run_requests[0].tags["ntplatform/archive_reason"] == "BTCUSDT stream 100% full"

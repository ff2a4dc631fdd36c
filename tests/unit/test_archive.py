"""The pure archive pieces: stream windows, row flattening, schema, atomic partition files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ntplatform import archive
from ntplatform.errors import ConfigError
from tests.archive_samples import HOUR_START_MS, sample_report

HOUR = datetime(2026, 12, 3, 14, tzinfo=UTC)


def test_window_id_range_is_half_open_over_stream_ids() -> None:
    low, high = archive.window_id_range(HOUR_START_MS, HOUR_START_MS + 3_600_000)
    assert low == f"{HOUR_START_MS}-0"
    assert high == f"{HOUR_START_MS + 3_599_999}-18446744073709551615"
    with pytest.raises(ValueError, match="empty window"):
        archive.window_id_range(5, 5)


def test_to_ms_rejects_naive_datetimes() -> None:
    assert archive.to_ms(HOUR) == HOUR_START_MS
    with pytest.raises(ValueError, match="naive"):
        archive.to_ms(datetime(2026, 12, 3, 14))  # noqa: DTZ001 - the point of the test


def test_partition_relpath_is_hive_style_in_utc() -> None:
    assert archive.partition_relpath("BTCUSDT", HOUR) == "symbol=BTCUSDT/date=2026-12-03/hour=14/part.parquet"
    early = datetime(2026, 12, 3, 4, tzinfo=UTC).astimezone(datetime.now(UTC).astimezone().tzinfo)
    expected = "symbol=ETHUSDT/date=2026-12-03/hour=04/part.parquet"
    assert archive.partition_relpath("ETHUSDT", early) == expected


def test_stream_ids_parse_and_order_numerically() -> None:
    assert archive.StreamId.parse(b"1700-2") == archive.StreamId(1700, 2)
    assert archive.StreamId.parse("999-10") < archive.StreamId.parse("1000-0")
    assert archive.StreamId.parse("1000-2") < archive.StreamId.parse("1000-10")
    assert str(archive.StreamId(5, 1)) == "5-1"


def test_flatten_report_types_every_field_and_flattens_slow() -> None:
    row = archive.flatten_report(f"{HOUR_START_MS}-7", sample_report(9))
    assert set(row) == set(archive.ARCHIVE_SCHEMA.names)
    assert row["seq"] == 9
    assert row["ts_published_ms"] == HOUR
    assert row["ts_event_ms"] == HOUR + timedelta(milliseconds=5)
    assert row["ask_depth"] == 8.0
    assert isinstance(row["ask_depth"], float)
    assert row["slow_vwap"] == 61790.25
    assert row["slow_ts_ms"] == HOUR - timedelta(milliseconds=100)
    assert row["slow_realized_vol"] is None
    assert row["stream_id"] == f"{HOUR_START_MS}-7"
    assert row["ts_stream_ms"] == HOUR


def test_flatten_report_without_slow_or_optional_fields_gives_nulls() -> None:
    report = sample_report(1, slow=False)
    del report["best_ask"]
    report["unknown_future_field"] = 1
    row = archive.flatten_report("1-0", report)
    assert row["best_ask"] is None
    assert all(row[name] is None for name in archive.ARCHIVE_SCHEMA.names if name.startswith("slow_"))
    assert "unknown_future_field" not in row


def test_schema_types_and_version() -> None:
    schema = archive.ARCHIVE_SCHEMA
    assert schema.field("ts_event_ms").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("best_bid").type == pa.float64()
    assert schema.field("seq").type == pa.int64()
    assert schema.field("stream_id").type == pa.string()
    assert "symbol" not in schema.names  # the hive partition key carries it
    assert schema.metadata[b"ntplatform.archive_schema_version"] == b"1"


def test_write_partition_replaces_the_file_atomically(tmp_path: Path) -> None:
    rows = [archive.flatten_report(f"{HOUR_START_MS + i}-0", sample_report(i + 1)) for i in range(3)]
    path = archive.write_partition(str(tmp_path), "BTCUSDT", HOUR, archive.rows_to_table(rows))
    assert path == f"{tmp_path.resolve().as_posix()}/symbol=BTCUSDT/date=2026-12-03/hour=14/part.parquet"
    path = archive.write_partition(str(tmp_path), "BTCUSDT", HOUR, archive.rows_to_table(rows[:2]))
    directory = Path(path).parent
    assert [p.name for p in directory.iterdir()] == ["part.parquet"]  # no temp file left behind
    table = pq.read_table(path)
    assert table.num_rows == 2
    assert table.schema.metadata[b"ntplatform.symbol"] == b"BTCUSDT"
    read = archive.read_partition(str(tmp_path), "BTCUSDT", HOUR)
    assert read is not None
    assert read.column("seq").to_pylist() == [1, 2]
    assert archive.read_partition(str(tmp_path), "BTCUSDT", HOUR - timedelta(hours=1)) is None


def test_write_partition_through_a_file_uri(tmp_path: Path) -> None:
    rows = [archive.flatten_report(f"{HOUR_START_MS}-0", sample_report(1))]
    uri = tmp_path.resolve().as_uri()
    path = archive.write_partition(uri, "BTCUSDT", HOUR, archive.rows_to_table(rows))
    assert path.startswith("file://")
    assert (tmp_path / "symbol=BTCUSDT/date=2026-12-03/hour=14/part.parquet").is_file()


def _table(ids_and_seqs: list[tuple[str, int]]) -> pa.Table:
    return archive.rows_to_table([archive.flatten_report(i, sample_report(s)) for i, s in ids_and_seqs])


def test_merge_trimmed_keeps_only_archived_rows_the_stream_lost() -> None:
    existing = _table([("10-0", 1), ("11-0", 2), ("12-0", 3)])
    fresh = _table([("12-0", 3), ("13-0", 4)])
    merged = archive.merge_trimmed(existing, fresh, archive.StreamId(12, 0))
    assert merged.column("stream_id").to_pylist() == ["10-0", "11-0", "12-0", "13-0"]
    assert archive.merge_trimmed(None, fresh, archive.StreamId(12, 0)) is fresh
    untrimmed = archive.merge_trimmed(existing, fresh, archive.StreamId(9, 0))
    assert untrimmed.column("stream_id").to_pylist() == ["12-0", "13-0"]
    gone = archive.merge_trimmed(existing, _table([]), None)
    assert gone.num_rows == 3


def test_completeness_counts_seq_holes() -> None:
    assert archive.completeness([1, 2, 3], trimmed_into_window=False, previous_last_seq=None).lost == 0
    inside = archive.completeness([5, 6, 9], trimmed_into_window=False, previous_last_seq=None)
    assert inside.lost == 2
    restarted = archive.completeness([7, 8, 1, 2, 4], trimmed_into_window=False, previous_last_seq=None)
    assert (restarted.lost, restarted.unverified) == (1, True)  # 3 is missing; before 1, unknown
    assert restarted.description == (
        "1 reports lost before archiving (0 at the window start, 1 inside); seq went back 1 time "
        "(first from 8 to 1): Redis lost its data, so reports written before that may be lost and "
        "cannot be counted"
    )
    repeated = archive.completeness([5, 5], trimmed_into_window=False, previous_last_seq=None)
    assert repeated.unverified
    assert "2 reports lost" in inside.description
    at_start = archive.completeness([8, 9], trimmed_into_window=True, previous_last_seq=3)
    assert at_start.lost == 4
    assert "4 at the window start" in at_start.description
    # not trimmed: entries before the first archived one simply were not in this hour
    assert archive.completeness([8, 9], trimmed_into_window=False, previous_last_seq=3).lost == 0
    # the stream began inside the window: seq 1 is the very first report
    born = archive.completeness([1, 2], trimmed_into_window=True, previous_last_seq=None)
    assert born.description == "complete"
    unknown = archive.completeness([40, 41], trimmed_into_window=True, previous_last_seq=None)
    assert unknown.unverified
    assert "up to 39 earlier reports may be lost" in unknown.description


@pytest.mark.parametrize(
    ("root", "says"),
    [
        ("/proc/nope", "cannot create the folder (No such file or directory)"),
        ("file:///proc/nope", "cannot create the folder (No such file or directory)"),
        ("ftp://x/y", "scheme ftp:// is not supported; use a local folder, file:///absolute/path"),
        ("file://host/x", "cannot open it (Unsupported hostname"),
    ],
)
def test_check_root_that_cannot_hold_an_archive_names_the_setting_in_one_line(root: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        archive.check_root(root)
    message = str(raised.value)
    assert message.startswith(f"invalid configuration: NT_ARCHIVE_DIR={root!r}: ")
    assert says in message
    assert "\n" not in message


def test_check_root_on_a_file_refuses_it_and_leaves_it_alone(tmp_path: Path) -> None:
    afile = tmp_path / "archive"
    afile.write_bytes(b"kept")
    for root in (str(afile), afile.as_uri()):
        with pytest.raises(ConfigError, match=r"NT_ARCHIVE_DIR=.*: it is a file \(.*\); a folder is needed"):
            archive.check_root(root, create=False)
    with pytest.raises(ConfigError, match="--out="):
        archive.check_root(str(afile), "--out")
    assert afile.read_bytes() == b"kept"


def test_check_root_creates_a_missing_local_folder_only_when_asked(tmp_path: Path) -> None:
    archive.check_root(str(tmp_path / "later"), create=False)
    assert not (tmp_path / "later").exists()
    archive.check_root(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()


def test_every_archive_operation_on_an_unsupported_uri_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"NT_ARCHIVE_DIR='ftp://x/y': scheme ftp:// is not supported"):
        archive.archived_symbols("ftp://x/y")
    with pytest.raises(ConfigError, match=r"NT_ARCHIVE_DIR='ftp://x/y'"):
        archive.read_partition("ftp://x/y", "BTCUSDT", HOUR)

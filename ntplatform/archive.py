"""The report archive: Parquet schema, row flattening, stream windows, atomic writes.

Pure of Dagster: ``assets/archive.py`` wires these pieces into a partitioned asset. The layout
and schema are documented in ``docs/archive.md``.

Stream ids are ``<redis-ms>-<seq>``, so an hour of reports is the id range
``<start_ms>-0`` … ``<end_ms - 1>-18446744073709551615``; the window is half-open.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import redis

from ntplatform import keys
from ntplatform.errors import ConfigError
from ntplatform.settings import redact_url

ARCHIVE_SCHEMA_VERSION = 1  # version of the Parquet layout below (the report's own is a column)
MAX_STREAM_SEQ = 18446744073709551615  # largest sequence part of a stream id
PART_FILE = "part.parquet"
DEFAULT_PAGE = 1000
MAX_PAGE = 100_000  # XRANGE COUNT per round trip: NT_STREAM_MAXLEN's default, a whole stream
ROOT_SETTING = "NT_ARCHIVE_DIR"
# URI schemes pyarrow resolves to a filesystem (``pyarrow.fs.FileSystem.from_uri``).
ROOT_SCHEMES = ("file", "s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
ROOT_ALLOWED = (
    "a local folder, file:///absolute/path, or a URI such as s3://bucket/prefix (also gs, abfs, hdfs)"
)

_TS = pa.timestamp("ms", tz="UTC")

# (report field, type). Timestamps keep the report's field names but are typed. ``symbol`` is
# not a column: it is the hive partition key in the path (a column of the same name would
# clash with it when pandas or pyarrow read the whole layout) and the file's metadata.
_TOP_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("schema_version", pa.int64()),
    ("node_id", pa.string()),
    ("fencing_token", pa.int64()),
    ("seq", pa.int64()),
    ("book_update_id", pa.int64()),
    ("ts_event_ms", _TS),
    ("ts_published_ms", _TS),
    ("data_age_ms", pa.int64()),
    ("best_bid", pa.float64()),
    ("best_ask", pa.float64()),
    ("best_bid_qty", pa.float64()),
    ("best_ask_qty", pa.float64()),
    ("mid", pa.float64()),
    ("spread", pa.float64()),
    ("spread_bps", pa.float64()),
    ("microprice", pa.float64()),
    ("imbalance_1", pa.float64()),
    ("imbalance_5", pa.float64()),
    ("imbalance_20", pa.float64()),
    ("bid_depth", pa.float64()),
    ("ask_depth", pa.float64()),
    ("last_trade_price", pa.float64()),
    ("last_trade_qty", pa.float64()),
    ("last_trade_aggressor", pa.string()),
)
_SLOW_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("ts_ms", _TS),
    ("window_min", pa.int64()),
    ("trade_count", pa.int64()),
    ("volume", pa.float64()),
    ("buy_volume", pa.float64()),
    ("sell_volume", pa.float64()),
    ("vwap", pa.float64()),
    ("poc_price", pa.float64()),
    ("value_area_low", pa.float64()),
    ("value_area_high", pa.float64()),
    ("realized_vol", pa.float64()),
)

ARCHIVE_SCHEMA = pa.schema(
    [pa.field(name, kind) for name, kind in _TOP_FIELDS]
    + [pa.field(f"slow_{name}", kind) for name, kind in _SLOW_FIELDS]
    + [pa.field("stream_id", pa.string()), pa.field("ts_stream_ms", _TS)],
    metadata={b"ntplatform.archive_schema_version": str(ARCHIVE_SCHEMA_VERSION).encode()},
)


@dataclass(frozen=True)
class StreamId:
    ms: int
    seq: int

    @classmethod
    def parse(cls, raw: str | bytes) -> StreamId:
        text = raw.decode() if isinstance(raw, bytes) else raw
        ms, _, seq = text.partition("-")
        return cls(int(ms), int(seq or 0))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    def __lt__(self, other: StreamId) -> bool:
        return (self.ms, self.seq) < (other.ms, other.seq)


def window_id_range(start_ms: int, end_ms: int) -> tuple[str, str]:
    """The inclusive XRANGE bounds of the half-open window ``[start_ms, end_ms)``."""
    if end_ms <= start_ms:
        raise ValueError(f"empty window: start {start_ms} ms, end {end_ms} ms")
    return f"{start_ms}-0", f"{end_ms - 1}-{MAX_STREAM_SEQ}"


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: archive windows are in UTC")
    return int(moment.timestamp() * 1000)


def partition_relpath(symbol: str, window_start: datetime) -> str:
    """``symbol=BTCUSDT/date=2026-12-03/hour=14/part.parquet`` (hour in UTC)."""
    utc = window_start.astimezone(UTC)
    return f"symbol={symbol}/date={utc:%Y-%m-%d}/hour={utc:%H}/{PART_FILE}"


def _typed(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if kind == _TS:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    if kind == pa.int64():
        return int(value)
    if kind == pa.float64():
        return float(value)
    return str(value)


def flatten_report(stream_id: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """One archive row from one stream entry; missing fields are null, unknown ones dropped."""
    row = {name: _typed(report.get(name), kind) for name, kind in _TOP_FIELDS}
    slow = report.get("slow") or {}
    for name, kind in _SLOW_FIELDS:
        row[f"slow_{name}"] = _typed(slow.get(name), kind)
    row["stream_id"] = stream_id
    row["ts_stream_ms"] = _typed(StreamId.parse(stream_id).ms, _TS)
    return row


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=ARCHIVE_SCHEMA)


def read_stream_window(
    client: redis.Redis, symbol: str, start_ms: int, end_ms: int, page: int = DEFAULT_PAGE
) -> Iterator[dict[str, Any]]:
    """Archive rows for every entry of ``report:stream:{symbol}`` in the window, in id order."""
    low, high = window_id_range(start_ms, end_ms)
    key = keys.stream_key(symbol)
    while True:
        entries = cast(list[tuple[Any, dict[Any, Any]]], client.xrange(key, min=low, max=high, count=page))
        for raw_id, fields in entries:
            stream_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            field = keys.REPORT_FIELD.encode()
            raw = fields[field] if field in fields else fields[keys.REPORT_FIELD]  # decoded clients
            yield flatten_report(stream_id, orjson.loads(raw))
        if len(entries) < page:
            return
        low = f"({stream_id}"  # exclusive start (Redis >= 6.2)


def first_stream_id(client: redis.Redis, symbol: str) -> StreamId | None:
    """The oldest entry still in the stream; None when the stream is empty or missing."""
    entries = cast(list[tuple[Any, Any]], client.xrange(keys.stream_key(symbol), count=1))
    return StreamId.parse(entries[0][0]) if entries else None


def filesystem(root: str, setting: str = ROOT_SETTING) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and base path for a local directory or a URI (``s3://…``).

    A root pyarrow cannot resolve raises ``ConfigError`` naming ``setting``, the value and
    what is allowed (one line: pyarrow's own messages can run to pages).
    """
    if "://" not in root:
        return pafs.LocalFileSystem(), Path(root).resolve().as_posix()
    shown = redact_url(root)
    _check_scheme(root, setting)
    try:
        fs, base = pafs.FileSystem.from_uri(root)
    except (ValueError, OSError, pa.ArrowException) as error:
        raise ConfigError(
            setting, shown, f"cannot open it ({_first_line(error)}); use {ROOT_ALLOWED}"
        ) from None
    return fs, base.rstrip("/")


def _check_scheme(root: str, setting: str) -> str:
    scheme = root.split("://", 1)[0].lower() if "://" in root else "file"
    if scheme not in ROOT_SCHEMES:
        raise ConfigError(
            setting, redact_url(root), f"scheme {scheme}:// is not supported; use {ROOT_ALLOWED}"
        )
    return scheme


def check_root_offline(root: str, setting: str = ROOT_SETTING) -> None:
    """``check_root`` without network or writes, for start-up: a local root must not be a file;
    a remote one needs a scheme pyarrow knows (credentials and reachability show at first use)."""
    if _check_scheme(root, setting) == "file":
        check_root(root, setting, create=False)


def check_root(root: str, setting: str = ROOT_SETTING, create: bool = True) -> None:
    """Fail early, with one line naming ``setting``, when ``root`` cannot hold an archive.

    The URI must resolve (``filesystem``); a local root (a path or ``file://``) must be a
    folder, and with ``create`` it is created when missing. Remote stores are not probed:
    their errors (credentials, network) come with the first read or write.
    """
    fs, base = filesystem(root, setting)
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    kind = fs.get_file_info(base).type
    if kind == pafs.FileType.Directory:
        return
    if kind != pafs.FileType.NotFound:
        raise ConfigError(setting, root, f"it is a file ({base}); a folder is needed")
    if not create:
        return
    try:
        fs.create_dir(base, recursive=True)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else _first_line(error)
        raise ConfigError(setting, root, f"cannot create the folder ({reason})") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _relpath(prefix: str, symbol: str, window_start: datetime) -> str:
    """The partition's file below the root, under ``prefix`` (a folder such as ``market=spot``) if any."""
    relpath = partition_relpath(symbol, window_start)
    return f"{prefix}/{relpath}" if prefix else relpath


def read_partition(root: str, symbol: str, window_start: datetime, prefix: str = "") -> pa.Table | None:
    fs, base = filesystem(root)
    path = f"{base}/{_relpath(prefix, symbol, window_start)}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    return pq.read_table(path, filesystem=fs)


def partition_metadata(
    root: str, symbol: str, window_start: datetime, prefix: str = ""
) -> dict[bytes, bytes]:
    """The key-value metadata of the partition's file ({} when there is none), without reading rows."""
    fs, base = filesystem(root)
    path = f"{base}/{_relpath(prefix, symbol, window_start)}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return {}
    with fs.open_input_file(path) as source:
        return dict(pq.read_schema(source).metadata or {})


def write_partition(
    root: str,
    symbol: str,
    window_start: datetime,
    table: pa.Table,
    prefix: str = "",
    extra_metadata: dict[bytes, bytes] | None = None,
) -> str:
    """Replace the partition's file atomically (write a temp file, then rename); returns its path."""
    fs, base = filesystem(root)
    relpath = _relpath(prefix, symbol, window_start)
    path = f"{base}/{relpath}"
    directory = path.rsplit("/", 1)[0]
    fs.create_dir(directory, recursive=True)
    temp = f"{directory}/.{PART_FILE}.{uuid.uuid4().hex}.tmp"
    try:
        metadata = {
            **(ARCHIVE_SCHEMA.metadata or {}),
            b"ntplatform.symbol": symbol.encode(),
            **(extra_metadata or {}),
        }
        pq.write_table(table.cast(ARCHIVE_SCHEMA).replace_schema_metadata(metadata), temp, filesystem=fs)
        fs.move(temp, path)
    finally:
        if fs.get_file_info(temp).type == pafs.FileType.File:
            fs.delete_file(temp)
    return _shown(root, path, relpath)


def merge_trimmed(existing: pa.Table | None, fresh: pa.Table, first_in_stream: StreamId | None) -> pa.Table:
    """Fresh rows plus archived rows the stream has since trimmed (older than its first entry).

    Re-running a partition therefore never drops reports that were archived before the
    stream lost them, and never duplicates a report (each stream id appears once).
    """
    if existing is None or existing.num_rows == 0:
        return fresh
    kept = [
        row
        for row in existing.to_pylist()
        if first_in_stream is None or StreamId.parse(row["stream_id"]) < first_in_stream
    ]
    if not kept:
        return fresh
    return rows_to_table(kept + fresh.to_pylist())


@dataclass(frozen=True)
class Completeness:
    """What the archive of one symbol-hour is missing, judged by the report ``seq``."""

    lost: int  # reports known to be missing
    unverified: bool  # the stream was trimmed past the window start and nothing shows what preceded it
    description: str


def completeness(
    seqs: Sequence[int],
    trimmed_into_window: bool,
    previous_last_seq: int | None,
) -> Completeness:
    """Count reports lost from one symbol-hour.

    ``seq`` increases by one per report of a symbol across writers, so a hole between
    consecutive archived rows (``seqs`` in stream order) is that many lost reports. A ``seq``
    that does not rise (Redis lost its data and no writer remembered the symbol's seq) hides
    how many reports were lost between the two rows: the hour is then ``unverified``. At the
    window start a hole counts
    only when the stream was trimmed past the window start before archiving
    (``trimmed_into_window``); it is measured from the previous hour's last archived ``seq``,
    or from 0 when the first archived report is the stream's first (``seq`` 1).
    """
    ordered = list(seqs)
    inside = sum(max(0, b - a - 1) for a, b in itertools.pairwise(ordered))
    back = [(a, b) for a, b in itertools.pairwise(ordered) if b <= a]
    at_start = 0
    unverified = bool(back)
    if trimmed_into_window and ordered:
        if previous_last_seq is not None:
            at_start = max(0, ordered[0] - previous_last_seq - 1)
        elif ordered[0] > 1:
            unverified = True
    lost = inside + at_start
    texts = []
    if lost:
        texts.append(
            f"{lost} reports lost before archiving ({at_start} at the window start, {inside} inside)"
        )
    if back:
        (first_from, first_to), times = back[0], "time" if len(back) == 1 else "times"
        texts.append(
            f"seq went back {len(back)} {times} (first from {first_from} to {first_to}): Redis lost "
            "its data, so reports written before that may be lost and cannot be counted"
        )
    if texts:
        text = "; ".join(texts)
    elif unverified:
        text = (
            f"stream trimmed past the window start before archiving; first archived seq {ordered[0]} "
            "and the previous hour is not archived, so up to "
            f"{ordered[0] - 1} earlier reports may be lost"
        )
    else:
        text = "complete"
    return Completeness(lost=lost, unverified=unverified, description=text)


ANALYSIS_DIR = "_analysis"  # beside the symbol= folders; a leading _ keeps it out of datasets


def archived_symbols(root: str) -> list[str]:
    """The symbols that have a ``symbol=`` folder under ``root``."""
    fs, base = filesystem(root)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return []
    found = fs.get_file_info(pafs.FileSelector(base, recursive=False))
    return sorted(
        info.base_name.removeprefix("symbol=")
        for info in found
        if info.type == pafs.FileType.Directory and info.base_name.startswith("symbol=")
    )


def analysis_relpath(window_start: datetime, name: str) -> str:
    utc = window_start.astimezone(UTC)
    return f"{ANALYSIS_DIR}/date={utc:%Y-%m-%d}/hour={utc:%H}/{name}"


def write_file(root: str, relpath: str, data: bytes) -> str:
    """Write ``data`` to ``root/relpath`` (temp file, then rename); returns its path."""
    fs, base = filesystem(root)
    path = f"{base}/{relpath}"
    directory = path.rsplit("/", 1)[0]
    fs.create_dir(directory, recursive=True)
    temp = f"{directory}/.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(temp) as out:
        out.write(data)
    fs.move(temp, path)
    return _shown(root, path, relpath)


def _shown(root: str, path: str, relpath: str) -> str:
    """The path as the operator named the root: local path, or the URI without its options."""
    if "://" not in root:
        return path
    return f"{root.split('?', 1)[0].rstrip('/')}/{relpath}"

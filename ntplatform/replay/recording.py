"""Load and validate Binance market-data recordings.

A recording is a gzip text file, one message per line: ``<receive_time_ns> <json>``.
The JSON is either a combined-stream message as Binance sends it
(``{"stream": "btcusdt@depth@100ms", "data": {...}}``) or, once, a REST depth snapshot
(``{"lastUpdateId": ..., "bids": [...], "asks": [...]}``).

Every line is checked before anything is served, so a bad file fails at start with a
:class:`~ntplatform.errors.RecordingError` naming the file and the line. The loaded
timeline starts at the snapshot: diff-depth events the snapshot already covers are
dropped, the ones buffered before it that it does not cover are kept, and the kept
depth events must chain without a gap by Binance's rules for the market.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ntplatform.errors import RecordingError

SPOT = "spot"
USDM = "usdm"

DEPTH = "depth"
TRADE = "trade"
AGG_TRADE = "aggTrade"
BOOK_TICKER = "bookTicker"

_DIFF_DEPTH_KIND = re.compile(r"^depth(@\d+ms)?$")
_SNAPSHOT_FIELDS = {"lastUpdateId": int, "bids": list, "asks": list}
_REQUIRED: dict[str, dict[str, type]] = {
    DEPTH: {"E": int, "s": str, "U": int, "u": int, "b": list, "a": list},
    TRADE: {"E": int, "s": str, "t": int, "p": str, "q": str, "T": int, "m": bool},
    AGG_TRADE: {
        "E": int,
        "s": str,
        "a": int,
        "p": str,
        "q": str,
        "f": int,
        "l": int,
        "T": int,
        "m": bool,
    },
    BOOK_TICKER: {"s": str, "u": int, "b": str, "B": str, "a": str, "A": str},
}


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One combined-stream message of the timeline; ``body`` is the raw JSON line."""

    receive_ns: int
    channel: str
    body: bytes


@dataclass(frozen=True)
class Recording:
    """A validated recording of one symbol, ready to replay from its snapshot."""

    path: Path
    symbol: str
    market: str
    snapshot: dict[str, Any]
    snapshot_receive_ns: int
    messages: tuple[RecordedMessage, ...]
    update_id_range: tuple[int, int]
    trade_id_range: tuple[int, int] | None
    channels: frozenset[str]


def recording_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders to the ``*.gz`` files inside them; files are taken as given."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.gz"))
            if not found:
                raise RecordingError(str(path), None, "folder holds no *.gz recording")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise RecordingError(str(path), None, "no such file or folder")
    return files


def load_recordings(paths: Iterable[Path]) -> list[Recording]:
    """Load every recording under ``paths``: one market, each symbol in one file only."""
    recordings: list[Recording] = []
    by_symbol: dict[str, Recording] = {}
    for file in recording_files(paths):
        recording = load_recording(file)
        if recordings and recording.market != recordings[0].market:
            raise RecordingError(
                str(file),
                None,
                f"market {recording.market} differs from {recordings[0].market} of "
                f"{recordings[0].path}; serve one market at a time",
            )
        other = by_symbol.get(recording.symbol)
        if other is not None:
            raise RecordingError(
                str(file), None, f"symbol {recording.symbol} is also recorded in {other.path}"
            )
        by_symbol[recording.symbol] = recording
        recordings.append(recording)
    return recordings


def load_recording(path: Path) -> Recording:
    """Read, check and index one recording file."""
    reader = _RecordingReader(path)
    line_number = 0
    try:
        with gzip.open(path, "rb") as stream:
            for line_number, line in enumerate(stream, start=1):
                reader.feed(line_number, line)
    except (OSError, EOFError, zlib.error) as exc:
        raise RecordingError(str(path), line_number + 1, f"unreadable gzip data: {exc}") from None
    return reader.finish()


class _RecordingReader:
    """Line-by-line parser and checker behind :func:`load_recording`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.symbol: str | None = None
        self.market: str | None = None
        self.snapshot: dict[str, Any] | None = None
        self.snapshot_receive_ns = 0
        self.messages: list[RecordedMessage] = []
        self.pending_depth: list[tuple[int, RecordedMessage, dict[str, Any]]] = []
        self.channels: set[str] = set()
        self.previous_u: int | None = None
        self.ids = _IdRange()
        self.trade_ids = _IdRange()

    def error(self, line: int | None, reason: str) -> RecordingError:
        return RecordingError(str(self.path), line, reason)

    def feed(self, line: int, raw: bytes) -> None:
        if not raw.strip():
            return
        stamp, _, body = raw.partition(b" ")
        if not stamp.isdigit():
            raise self.error(line, f"bad receive timestamp {stamp[:32]!r}")
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise self.error(line, f"bad JSON: {exc}") from None
        if not isinstance(message, dict):
            raise self.error(line, "expected a JSON object")
        if "lastUpdateId" in message:
            self._take_snapshot(line, int(stamp), message)
        elif "stream" in message:
            self._take_stream_message(line, int(stamp), body.strip(), message)
        else:
            raise self.error(line, "neither a combined-stream message nor a depth snapshot")

    def _take_snapshot(self, line: int, receive_ns: int, snapshot: dict[str, Any]) -> None:
        _check_fields(self, line, snapshot, _SNAPSHOT_FIELDS)
        for side in ("bids", "asks"):
            _check_levels(self, line, snapshot[side], side)
        if self.snapshot is not None:
            return  # a later snapshot of the same stream adds nothing: the first one anchors
        self.snapshot = snapshot
        self.snapshot_receive_ns = receive_ns
        self.ids.add(snapshot["lastUpdateId"])
        buffered, self.pending_depth = self.pending_depth, []
        for buffered_line, message, data in buffered:
            self._take_depth(buffered_line, message, data, snapshot["lastUpdateId"])

    def _take_stream_message(self, line: int, receive_ns: int, body: bytes, message: dict[str, Any]) -> None:
        stream, data = message.get("stream"), message.get("data")
        if not isinstance(stream, str) or not isinstance(data, dict):
            raise self.error(line, "combined-stream message needs a string 'stream' and a 'data' object")
        channel = _channel_of(self, line, stream)
        _check_fields(self, line, data, _REQUIRED[channel])
        symbol = stream.partition("@")[0].upper()
        if data["s"] != symbol:
            raise self.error(line, f"stream {stream!r} carries symbol {data['s']!r}")
        if self.symbol is None:
            self.symbol = symbol
        elif symbol != self.symbol:
            raise self.error(line, f"symbol {symbol} in a recording of {self.symbol}")
        self.channels.add(channel)
        recorded = RecordedMessage(receive_ns, channel, body)
        if channel == DEPTH:
            self._check_market(line, stream, data)
            for side in ("b", "a"):
                _check_levels(self, line, data[side], side)
            if self.snapshot is None:
                self.pending_depth.append((line, recorded, data))
            else:
                self._take_depth(line, recorded, data, self.snapshot["lastUpdateId"])
        elif self.snapshot is not None:
            self._take_other(recorded, data)

    def _check_market(self, line: int, stream: str, data: dict[str, Any]) -> None:
        market = USDM if "pu" in data or stream.endswith("@0ms") else SPOT
        if self.market is None:
            self.market = market
        elif market != self.market:
            raise self.error(line, f"{market} depth event in a {self.market} recording")

    def _take_depth(self, line: int, recorded: RecordedMessage, data: dict[str, Any], last: int) -> None:
        futures = self.market == USDM
        if data["u"] < last or (data["u"] == last and not futures):
            return  # already contained in the snapshot
        first, final = data["U"], data["u"]
        previous = self.previous_u
        if previous is None:
            anchor = last if futures else last + 1
            if not first <= anchor <= final:
                raise self.error(
                    line, f"first depth event U={first} u={final} does not cover snapshot {last}"
                )
        elif futures and data.get("pu") != previous:
            raise self.error(line, f"depth sequence gap: pu={data.get('pu')} after u={previous}")
        elif not futures and first != previous + 1:
            raise self.error(line, f"depth sequence gap: U={first} after u={previous}")
        self.previous_u = final
        self.ids.add(first)
        self.ids.add(final)
        if "pu" in data:
            self.ids.add(data["pu"])
        # Events buffered before the snapshot go out together with it.
        receive_ns = max(recorded.receive_ns, self.snapshot_receive_ns)
        self.messages.append(RecordedMessage(receive_ns, DEPTH, recorded.body))

    def _take_other(self, recorded: RecordedMessage, data: dict[str, Any]) -> None:
        if recorded.channel == BOOK_TICKER:
            self.ids.add(data["u"])
        elif recorded.channel == TRADE:
            self.trade_ids.add(data["t"])
        else:
            self.trade_ids.add(data["a"])
            self.trade_ids.add(data["f"])
            self.trade_ids.add(data["l"])
        self.messages.append(recorded)

    def finish(self) -> Recording:
        if self.snapshot is None:
            raise self.error(None, "no depth snapshot line ({'lastUpdateId': ...}) in the file")
        if self.symbol is None or self.market is None:
            raise self.error(None, "no diff-depth stream messages in the file")
        if not self.messages:
            raise self.error(None, "no messages after the depth snapshot")
        update_range = self.ids.span()
        if update_range is None:
            raise self.error(None, "no update ids in the file")
        return Recording(
            path=self.path,
            symbol=self.symbol,
            market=self.market,
            snapshot=self.snapshot,
            snapshot_receive_ns=self.snapshot_receive_ns,
            messages=tuple(self.messages),
            update_id_range=update_range,
            trade_id_range=self.trade_ids.span(),
            channels=frozenset(self.channels),
        )


class _IdRange:
    """Smallest and largest id seen."""

    def __init__(self) -> None:
        self.low: int | None = None
        self.high: int | None = None

    def add(self, value: int) -> None:
        if self.low is None or value < self.low:
            self.low = value
        if self.high is None or value > self.high:
            self.high = value

    def span(self) -> tuple[int, int] | None:
        if self.low is None or self.high is None:
            return None
        return self.low, self.high


def _channel_of(reader: _RecordingReader, line: int, stream: str) -> str:
    symbol, _, kind = stream.partition("@")
    if not symbol:
        raise reader.error(line, f"stream name {stream!r} has no symbol")
    if _DIFF_DEPTH_KIND.match(kind):
        return DEPTH
    if kind in (TRADE, AGG_TRADE, BOOK_TICKER):
        return kind
    raise reader.error(line, f"unsupported stream {stream!r} (diff depth, trade, aggTrade, bookTicker)")


def _check_fields(reader: _RecordingReader, line: int, data: dict[str, Any], fields: dict[str, type]) -> None:
    for field, expected in fields.items():
        if field not in data:
            raise reader.error(line, f"missing field {field!r}")
        if type(data[field]) is not expected:
            raise reader.error(line, f"field {field!r} must be of JSON type {expected.__name__}")
    pu = data.get("pu")
    if pu is not None and type(pu) is not int:
        raise reader.error(line, "field 'pu' must be an integer")


def _check_levels(reader: _RecordingReader, line: int, levels: Any, side: str) -> None:
    if not isinstance(levels, list):
        raise reader.error(line, f"field {side!r} must be a list of [price, quantity]")
    for level in levels:
        if not (type(level) is list and len(level) == 2 and type(level[0]) is str and type(level[1]) is str):
            raise reader.error(line, f"bad {side!r} level {level!r}")
        try:
            float(level[0])
            float(level[1])
        except ValueError:
            raise reader.error(line, f"bad {side!r} level {level!r}") from None

"""Fixtures for the replay exchange's unit tests: small synthetic recordings."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

SNAPSHOT_NS = 1_700_000_000_000_000_000  # receive time of the synthetic snapshot
MS = 1_000_000


def spot_lines() -> list[tuple[int, Any]]:
    """A tiny spot BTCUSDT recording: (receive_ns, message) in file order."""
    t = SNAPSHOT_NS
    return [
        (t - 300 * MS, _depth("btcusdt@depth@100ms", 95, 100, [["9.00", "2.0"]], [], t - 299 * MS)),
        (t - 200 * MS, _trade(6, "10.00", t - 199 * MS)),  # before the snapshot: dropped
        (
            t - 100 * MS,
            _depth("btcusdt@depth@100ms", 101, 105, [["10.00", "1.5"]], [], t - 99 * MS),
        ),
        (
            t,
            {
                "lastUpdateId": 103,
                "bids": [["10.00", "1.0"], ["9.00", "2.0"]],
                "asks": [["11.00", "1.5"], ["12.00", "1.0"]],
            },
        ),
        (t + 10 * MS, _ticker("btcusdt@bookTicker", 105, "10.00", "1.5", "11.00", "1.5")),
        (t + 20 * MS, _trade(7, "11.00", t + 21 * MS)),
        (
            t + 100 * MS,
            _depth(
                "btcusdt@depth@100ms",
                106,
                108,
                [["10.00", "0.00000000"]],
                [["10.50", "3.0"]],
                t + 101 * MS,
            ),
        ),
        (t + 150 * MS, _ticker("btcusdt@bookTicker", 108, "9.00", "2.0", "10.50", "3.0")),
        (
            t + 200 * MS,
            _depth("btcusdt@depth@100ms", 109, 110, [["9.50", "4.0"]], [], t + 201 * MS),
        ),
        (t + 250 * MS, _trade(8, "10.50", t + 251 * MS)),
    ]


def usdm_lines() -> list[tuple[int, Any]]:
    """A tiny USD-M futures BTCUSDT recording (depth events carry ``pu``)."""
    t = SNAPSHOT_NS
    stream = "btcusdt@depth@0ms"
    return [
        (t - 100 * MS, _depth(stream, 90, 104, [["10.0", "1.500"]], [], t - 99 * MS, pu=80)),
        (
            t,
            {
                "lastUpdateId": 100,
                "E": t // MS + 1,
                "T": t // MS,
                "bids": [["10.0", "1.000"]],
                "asks": [["11.0", "2.000"]],
            },
        ),
        (t + 50 * MS, _depth(stream, 105, 120, [], [["10.5", "0.300"]], t + 51 * MS, pu=104)),
        (
            t + 60 * MS,
            _ticker(
                stream.replace("depth@0ms", "bookTicker"),
                120,
                "10.0",
                "1.500",
                "10.5",
                "0.300",
                futures_time=t + 61 * MS,
            ),
        ),
        (t + 90 * MS, _trade(40, "10.5", t + 91 * MS)),
    ]


def _depth(
    stream: str,
    first: int,
    final: int,
    bids: list,
    asks: list,
    event_ns: int,
    pu: int | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"e": "depthUpdate", "E": event_ns // MS + 1300}
    if pu is not None:
        data["T"] = event_ns // MS + 1299
    data |= {"s": stream.split("@")[0].upper(), "U": first, "u": final}
    if pu is not None:
        data["pu"] = pu
    data |= {"b": bids, "a": asks}
    return {"stream": stream, "data": data}


def _trade(trade_id: int, price: str, event_ns: int) -> dict[str, Any]:
    event_ms = event_ns // MS + 1300
    return {
        "stream": "btcusdt@trade",
        "data": {
            "e": "trade",
            "E": event_ms,
            "s": "BTCUSDT",
            "t": trade_id,
            "p": price,
            "q": "0.5",
            "T": event_ms - 1,
            "m": True,
            "M": True,
        },
    }


def _ticker(
    stream: str,
    update_id: int,
    bid: str,
    bid_qty: str,
    ask: str,
    ask_qty: str,
    futures_time: int | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "u": update_id,
        "s": "BTCUSDT",
        "b": bid,
        "B": bid_qty,
        "a": ask,
        "A": ask_qty,
    }
    if futures_time is not None:
        data |= {"e": "bookTicker", "T": futures_time // MS + 1300, "E": futures_time // MS + 1300}
    return {"stream": stream, "data": data}


def write_gz(path: Path, lines: list[tuple[int, Any]] | list[bytes]) -> Path:
    """Write recording lines (tuples are serialised; bytes are written as given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as stream:
        for line in lines:
            if isinstance(line, bytes):
                stream.write(line)
            else:
                stream.write(b"%d %s\n" % (line[0], orjson.dumps(line[1])))
    return path


@pytest.fixture(name="spot_lines")
def spot_lines_fixture() -> list[tuple[int, Any]]:
    """Fresh lines of the tiny spot recording (tests may edit them)."""
    return spot_lines()


@pytest.fixture(name="usdm_lines")
def usdm_lines_fixture() -> list[tuple[int, Any]]:
    """Fresh lines of the tiny USD-M recording (tests may edit them)."""
    return usdm_lines()


@pytest.fixture
def write_recording(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write lines into ``tmp_path/<name>`` and return the path."""

    def write(lines: list, name: str = "btcusdt.gz") -> Path:
        return write_gz(tmp_path / name, lines)

    return write

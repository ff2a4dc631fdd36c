"""Reading the shared recordings independently of the code under test."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def book_tickers(path: Path) -> dict[int, tuple[float, float]]:
    """The exchange's own best bid/ask by book update id, from a recording's bookTicker lines."""
    tickers: dict[int, tuple[float, float]] = {}
    with gzip.open(path, "rt") as lines:
        for line in lines:
            if "@bookTicker" not in line:
                continue
            data = json.loads(line.split(" ", 1)[1])["data"]
            tickers[int(data["u"])] = (float(data["b"]), float(data["a"]))
    return tickers


def last_depth_update_id(path: Path) -> int:
    last = 0
    with gzip.open(path, "rt") as lines:
        for line in lines:
            if "@depth" in line:
                last = max(last, int(json.loads(line.split(" ", 1)[1])["data"]["u"]))
    return last

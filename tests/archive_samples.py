"""Synthetic reports shaped like the producer's (docs/reports.md), for the archive tests."""

from __future__ import annotations

from typing import Any

HOUR_START_MS = 1_796_306_400_000  # 2026-12-03T14:00:00Z
PARTITION_KEY = "2026-12-03-14:00"


def sample_report(
    seq: int, symbol: str = "BTCUSDT", ts_ms: int = HOUR_START_MS, slow: bool = True
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "symbol": symbol,
        "node_id": "producer-node-001",
        "fencing_token": 3,
        "seq": seq,
        "ts_event_ms": ts_ms + 5,
        "ts_published_ms": ts_ms,
        "data_age_ms": 12,
        "book_update_id": 1000 + seq,
        "best_bid": 61800.5,
        "best_ask": 61801.0,
        "best_bid_qty": 1.25,
        "best_ask_qty": 0.5,
        "mid": 61800.75,
        "spread": 0.5,
        "spread_bps": 0.0809,
        "microprice": 61800.857,
        "imbalance_1": 0.428,
        "imbalance_5": 0.1,
        "imbalance_20": -0.2,
        "bid_depth": 10.0,
        "ask_depth": 8,
        "last_trade_price": 61801.0,
        "last_trade_qty": 0.01,
        "last_trade_aggressor": "buyer",
        "slow": (
            {
                "ts_ms": ts_ms - 100,
                "window_min": 30,
                "trade_count": 42,
                "volume": 3.5,
                "buy_volume": 2.0,
                "sell_volume": 1.5,
                "vwap": 61790.25,
                "poc_price": 61790.0,
                "value_area_low": 61780.0,
                "value_area_high": 61800.0,
                "realized_vol": None,
            }
            if slow
            else None
        ),
    }

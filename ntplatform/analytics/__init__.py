"""Analytics maths for the reports: book metrics, trade-window profile, realized volatility.

Pure functions and small stateful classes over plain numbers; nothing here does I/O
or imports NautilusTrader.
"""

from ntplatform.analytics.book_metrics import BOOK_METRIC_KEYS, book_metrics
from ntplatform.analytics.trade_window import (
    VALUE_AREA_SHARE,
    TradeWindow,
    default_bucket_size,
    value_area,
)
from ntplatform.analytics.volatility import MidSampler, realized_volatility

__all__ = [
    "BOOK_METRIC_KEYS",
    "VALUE_AREA_SHARE",
    "MidSampler",
    "TradeWindow",
    "book_metrics",
    "default_bucket_size",
    "realized_volatility",
    "value_area",
]

"""A volume profile of the trades in a sliding time window, kept incrementally.

Trades enter with :meth:`TradeWindow.add` and leave once they are older than the
window; running totals and per-price-bucket volumes are adjusted as they do, so a
summary costs a sort of the occupied buckets rather than a pass over every trade.
"""

from __future__ import annotations

import math
from collections import deque

VALUE_AREA_SHARE = 0.7
"""Share of the window's volume the value area must hold."""

# (ts_ms, price, quantity, bucket index, buyer_is_aggressor)
_Trade = tuple[int, float, float, int, bool | None]


def default_bucket_size(price: float) -> float:
    """The largest power of ten not above one basis point of ``price``.

    61837.0 gives 1.0 (one basis point is 6.18), 2650.0 gives 0.1 and 100.0 gives
    0.01: a BTC profile gets dollar rows, an ETH profile ten-cent rows.
    """
    if not (price > 0.0 and math.isfinite(price)):
        raise ValueError(f"bucket size needs a positive finite price, got {price!r}")
    exponent = math.floor(math.log10(price))
    if 10.0 ** (exponent + 1) <= price:  # log10 rounded down across a power of ten
        exponent += 1
    return 10.0 ** (exponent - 4)


def value_area(volumes: list[float], start: int, share: float = VALUE_AREA_SHARE) -> tuple[int, int]:
    """Grow a range of positions around ``start`` until it holds ``share`` of the volume.

    ``volumes`` are per-bucket volumes in price order. Each step compares the next
    bucket below the range with the next one above and adds the larger; when they
    are equal both are added in the same step. Returns the first and last position
    of the range, inclusive.
    """
    target = share * sum(volumes)
    last = len(volumes) - 1
    low = high = start
    area = volumes[start]
    while area < target and (low > 0 or high < last):
        below = volumes[low - 1] if low > 0 else -1.0
        above = volumes[high + 1] if high < last else -1.0
        if above >= below:
            high += 1
            area += above
        if below >= above:
            low -= 1
            area += below
    return low, high


class TradeWindow:
    """Volume, VWAP, point of control and value area of the last ``window_ms`` of trades.

    Trades are grouped into price buckets of width ``bucket_size`` centred on whole
    multiples of it: a price belongs to the bucket whose centre is nearest, halves
    rounding up. Without an explicit size, :func:`default_bucket_size` of the first
    trade's price is used and then kept for the life of the window.

    Summary definitions:

    - ``vwap``: total notional over total volume.
    - ``poc_price``: centre of the bucket with the most volume; ties go to the
      bucket whose centre is closest to the VWAP, then to the lower price.
    - ``value_area_low`` / ``value_area_high``: centres of the lowest and highest
      bucket of the value area, found by :func:`value_area` starting at the POC.
      Only occupied buckets count as neighbours; empty price rows are skipped.
    - ``buy_volume`` / ``sell_volume``: volume of trades whose buyer / seller was
      the aggressor; trades with an unknown aggressor count in ``volume`` only.

    Trades with a non-positive or non-finite price or quantity are ignored.
    Timestamps are expected in non-decreasing order; a late trade leaves no
    earlier than the trades added before it.

    The running sums are updated by adding and subtracting floats. To keep
    rounding error from accumulating, they are rebuilt from the trades still in
    the window each time as many trades have left as remain, which costs O(1) per
    trade on average.
    """

    def __init__(self, window_ms: int, bucket_size: float | None = None) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive, got {window_ms!r}")
        if bucket_size is not None and not (bucket_size > 0.0 and math.isfinite(bucket_size)):
            raise ValueError(f"bucket_size must be positive and finite, got {bucket_size!r}")
        self._window_ms = window_ms
        self._width = 0.0  # bucket size; 0.0 until chosen
        self._buckets_per_unit = 0  # 1 / width when that is a whole number, else 0
        if bucket_size is not None:
            self._set_bucket_size(bucket_size)
        self._trades: deque[_Trade] = deque()
        self._reset_totals()

    @property
    def window_ms(self) -> int:
        """Length of the window in milliseconds."""
        return self._window_ms

    @property
    def bucket_size(self) -> float | None:
        """Width of a price bucket; None until the first trade when chosen automatically."""
        return self._width or None

    def __len__(self) -> int:
        return len(self._trades)

    def add(self, ts_ms: int, price: float, qty: float, buyer_is_aggressor: bool | None) -> None:
        """Add one trade; ``buyer_is_aggressor`` None means the side is unknown."""
        if not (price > 0.0 and qty > 0.0 and math.isfinite(price) and math.isfinite(qty)):
            return
        if not self._width:
            self._set_bucket_size(default_bucket_size(price))
        trade = (ts_ms, price, qty, self._bucket_index(price), buyer_is_aggressor)
        self._trades.append(trade)
        self._include(trade)

    def expire(self, now_ms: int) -> None:
        """Drop the trades older than ``now_ms - window_ms``; a trade exactly at it stays."""
        cutoff = now_ms - self._window_ms
        trades = self._trades
        while trades and trades[0][0] < cutoff:
            self._exclude(trades.popleft())
            self._removed_since_rebuild += 1
        if not trades:
            self._reset_totals()
        elif self._removed_since_rebuild > len(trades):
            self._rebuild()

    def summary(self, now_ms: int) -> dict[str, float | int | None]:
        """Expire old trades, then describe the window.

        Keys: ``trade_count``, ``volume``, ``buy_volume``, ``sell_volume``, ``vwap``,
        ``poc_price``, ``value_area_low``, ``value_area_high``. An empty window has
        count 0, volumes 0.0 and None for the prices.
        """
        self.expire(now_ms)
        result: dict[str, float | int | None] = {
            "trade_count": len(self._trades),
            "volume": self._volume,
            "buy_volume": self._buy_volume,
            "sell_volume": self._sell_volume,
            "vwap": None,
            "poc_price": None,
            "value_area_low": None,
            "value_area_high": None,
        }
        if not self._bucket_volume:
            return result
        vwap = self._notional / self._volume
        ordered = sorted(self._bucket_volume)
        volumes = [self._bucket_volume[bucket] for bucket in ordered]
        point_of_control = self._point_of_control(ordered, volumes, vwap)
        low, high = value_area(volumes, point_of_control)
        result["vwap"] = vwap
        result["poc_price"] = self._bucket_centre(ordered[point_of_control])
        result["value_area_low"] = self._bucket_centre(ordered[low])
        result["value_area_high"] = self._bucket_centre(ordered[high])
        return result

    def _point_of_control(self, ordered: list[int], volumes: list[float], vwap: float) -> int:
        """Position of the fullest bucket, ties to the one nearest the VWAP, then the lower."""
        best = 0
        best_key = (volumes[0], -abs(self._bucket_centre(ordered[0]) - vwap))
        for position in range(1, len(ordered)):
            key = (volumes[position], -abs(self._bucket_centre(ordered[position]) - vwap))
            if key > best_key:  # strict: on a full tie the lower price, seen first, stays
                best, best_key = position, key
        return best

    def _set_bucket_size(self, size: float) -> None:
        self._width = size
        # A size such as 0.1 is not exact in binary; dividing by the whole number 10
        # instead of multiplying by 0.1 keeps bucket centres like 2650.1 exact.
        inverse = 1.0 / size
        whole = round(inverse)
        exact_inverse = size <= 1.0 and abs(inverse - whole) <= 1e-9 * inverse
        self._buckets_per_unit = whole if exact_inverse else 0

    def _bucket_index(self, price: float) -> int:
        if self._buckets_per_unit:
            return math.floor(price * self._buckets_per_unit + 0.5)
        return math.floor(price / self._width + 0.5)

    def _bucket_centre(self, bucket: int) -> float:
        if self._buckets_per_unit:
            return bucket / self._buckets_per_unit
        return bucket * self._width

    def _reset_totals(self) -> None:
        self._volume = 0.0
        self._buy_volume = 0.0
        self._sell_volume = 0.0
        self._notional = 0.0
        self._buy_count = 0
        self._sell_count = 0
        self._bucket_volume: dict[int, float] = {}
        self._bucket_count: dict[int, int] = {}
        self._removed_since_rebuild = 0

    def _rebuild(self) -> None:
        self._reset_totals()
        for trade in self._trades:
            self._include(trade)

    def _include(self, trade: _Trade) -> None:
        _, price, qty, bucket, buyer_is_aggressor = trade
        self._volume += qty
        self._notional += price * qty
        if buyer_is_aggressor is True:
            self._buy_volume += qty
            self._buy_count += 1
        elif buyer_is_aggressor is False:
            self._sell_volume += qty
            self._sell_count += 1
        self._bucket_volume[bucket] = self._bucket_volume.get(bucket, 0.0) + qty
        self._bucket_count[bucket] = self._bucket_count.get(bucket, 0) + 1

    def _exclude(self, trade: _Trade) -> None:
        _, price, qty, bucket, buyer_is_aggressor = trade
        self._volume -= qty
        self._notional -= price * qty
        if buyer_is_aggressor is True:
            self._buy_count -= 1
            self._buy_volume = self._buy_volume - qty if self._buy_count else 0.0
        elif buyer_is_aggressor is False:
            self._sell_count -= 1
            self._sell_volume = self._sell_volume - qty if self._sell_count else 0.0
        remaining = self._bucket_count[bucket] - 1
        if remaining:
            self._bucket_count[bucket] = remaining
            self._bucket_volume[bucket] -= qty
        else:  # the bucket's last trade left: drop it rather than keep a float residue
            del self._bucket_count[bucket]
            del self._bucket_volume[bucket]

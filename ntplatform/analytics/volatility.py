"""Realized volatility of the mid price from one-second samples.

The volatility is the sample standard deviation (n - 1 in the denominator) of the
log returns between one-second mid samples. It is per second and not annualised.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence


def _is_usable(mid: float | None) -> bool:
    """Whether ``mid`` can enter a log return: positive and finite."""
    return mid is not None and mid > 0.0 and math.isfinite(mid)


def _sample_standard_deviation(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None with fewer than two values or on overflow."""
    count = len(values)
    if count < 2:
        return None
    mean = math.fsum(values) / count
    variance = math.fsum((value - mean) ** 2 for value in values) / (count - 1)
    deviation = math.sqrt(variance)
    return deviation if math.isfinite(deviation) else None


def _log_return(before: float, after: float) -> float:
    """``ln(after / before)`` for positive finite prices, finite even when the ratio is not."""
    ratio = after / before
    if 0.0 < ratio < math.inf:
        return math.log(ratio)
    return math.log(after) - math.log(before)


def _log_returns(mids: Iterable[float]) -> list[float]:
    returns: list[float] = []
    previous: float | None = None
    for mid in mids:
        if previous is not None:
            returns.append(_log_return(previous, mid))
        previous = mid
    return returns


def realized_volatility(mids: Sequence[float]) -> float | None:
    """Sample standard deviation of the log returns between consecutive ``mids``.

    None when there are fewer than two returns (three mids) or when any mid is
    not a positive finite number.
    """
    if not all(_is_usable(mid) for mid in mids):
        return None
    return _sample_standard_deviation(_log_returns(mids))


class MidSampler:
    """Keeps the last mid of each whole second and measures its realized volatility.

    A sample belongs to second ``ts_ms // 1000``; a later mid in the same second
    replaces it. Returns are taken only between samples of adjacent seconds: a
    second with no sample breaks the series rather than stretching one return
    over the gap, so the caller should record at least once a second (the fast
    cycle does) for a quiet book to count as zero returns. A second stays in the
    window while its start, ``second * 1000``, is not before ``now_ms - window_ms``,
    so at a whole second a 900 s window holds 901 samples and 900 returns.

    Mids that are None, not positive or not finite are ignored, as are samples
    for a second earlier than the latest one recorded.
    """

    def __init__(self, window_ms: int) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive, got {window_ms!r}")
        self._window_ms = window_ms
        self._samples: deque[tuple[int, float]] = deque()  # (second, last mid)

    @property
    def window_ms(self) -> int:
        """Length of the window in milliseconds."""
        return self._window_ms

    def __len__(self) -> int:
        return len(self._samples)

    def record(self, ts_ms: int, mid: float | None) -> None:
        """Record the mid seen at ``ts_ms``, replacing any earlier mid of that second."""
        if mid is None or not _is_usable(mid):
            return
        second = ts_ms // 1000
        samples = self._samples
        if samples and samples[-1][0] == second:
            samples[-1] = (second, mid)
        elif not samples or samples[-1][0] < second:
            samples.append((second, mid))
        self._expire(ts_ms)

    def realized_vol(self, now_ms: int) -> float | None:
        """Realized volatility over the window ending at ``now_ms``; None below two returns."""
        self._expire(now_ms)
        returns: list[float] = []
        previous_second: int | None = None
        previous_mid = 1.0
        for second, mid in self._samples:
            if previous_second is not None and previous_second + 1 == second:
                returns.append(_log_return(previous_mid, mid))
            previous_second, previous_mid = second, mid
        return _sample_standard_deviation(returns)

    def _expire(self, now_ms: int) -> None:
        cutoff = now_ms - self._window_ms
        samples = self._samples
        while samples and samples[0][0] * 1000 < cutoff:
            samples.popleft()

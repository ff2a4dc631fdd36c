"""How long to wait before the next book-snapshot request: pure, no I/O.

The producer retries a failed snapshot after 0.5, 1 and 2 s, then every 5 s, for as long as it
follows the symbol. A rate-limited answer (HTTP 429 "too many requests", 418 "IP banned") is
different: asking again early only prolongs the limit, and on Binance repeated requests into a
429 escalate to a ban of the whole IP (every symbol's snapshots). Then the producer waits

1. what the exchange asked for: the ``Retry-After`` header, or for a ban the time in its
   message ("IP banned until 1733300000000"), at most 5 minutes at a time;
2. else 10, 20, 40, then every 60 s (Binance's weight limits reset each minute).

NautilusTrader 1.221's HTTP client hands no response headers to Python (``HttpResponse.headers``
is always empty), so with it only the message and the fallback schedule apply; the header is
read anyway, for clients that keep it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

SNAPSHOT_RETRY_S = (0.5, 1.0, 2.0, 5.0)
RATE_LIMITED_RETRY_S = (10.0, 20.0, 40.0, 60.0)
RATE_LIMIT_STATUSES = (418, 429)
RATE_LIMIT_CODE = -1003  # Binance's "too many requests" / "IP banned" error code
MAX_WAIT_S = 300.0  # a longer ban is still asked about every 5 minutes, and logged each time
_BANNED_UNTIL = re.compile(r"banned until (\d{12,14})")


def is_rate_limited(status: object, message: object) -> bool:
    """A 429/418 answer, or a body carrying Binance's code -1003."""
    return status in RATE_LIMIT_STATUSES or (
        isinstance(message, Mapping) and message.get("code") == RATE_LIMIT_CODE
    )


def requested_wait_s(headers: object, message: object, now_ms: int) -> float | None:
    """Seconds the exchange asked us to wait, if it said: ``Retry-After`` or a ban's end time.

    ``headers`` is whatever the HTTP layer kept (a mapping, any key case); a missing, negative or
    non-numeric value (the HTTP-date form Binance never sends) counts as not given.
    """
    if isinstance(headers, Mapping):
        value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            seconds = math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_WAIT_S)
    text = message.get("msg") if isinstance(message, Mapping) else message
    found = _BANNED_UNTIL.search(text) if isinstance(text, str) else None
    if found:
        return min(max(0.0, (int(found.group(1)) - now_ms) / 1000), MAX_WAIT_S)
    return None


def snapshot_retry_delay_s(attempt: int, rate_limited: int = 0, requested: float | None = None) -> float:
    """The wait after failed attempt ``attempt`` (0-based).

    ``rate_limited`` counts the consecutive rate-limited answers so far, this one included;
    ``requested`` is what the exchange asked for (:func:`requested_wait_s`).
    """
    scheduled = SNAPSHOT_RETRY_S[min(attempt, len(SNAPSHOT_RETRY_S) - 1)]
    if rate_limited <= 0:
        return scheduled
    if requested is not None:
        return max(scheduled, requested)
    return RATE_LIMITED_RETRY_S[min(rate_limited - 1, len(RATE_LIMITED_RETRY_S) - 1)]


def stuck(attempt: int, delay_s: float) -> bool:
    """True once the book stays unsynced for long: the schedule is used up, or the wait exceeds it."""
    return attempt + 1 > len(SNAPSHOT_RETRY_S) or delay_s > SNAPSHOT_RETRY_S[-1]

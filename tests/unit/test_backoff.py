"""Snapshot retry waits: the fixed schedule, and longer ones when the exchange rate-limits us."""

from __future__ import annotations

import pytest

from ntplatform.backoff import MAX_WAIT_S, is_rate_limited, requested_wait_s, snapshot_retry_delay_s, stuck

NOW_MS = 1_733_300_000_000
TOO_MANY = {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE."}


@pytest.mark.parametrize(("attempt", "wait"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 5.0), (4, 5.0), (40, 5.0)])
def test_schedule_for_errors_that_are_not_rate_limits(attempt: int, wait: float) -> None:
    assert snapshot_retry_delay_s(attempt) == wait


@pytest.mark.parametrize(("rate_limited", "wait"), [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (9, 60.0)])
def test_rate_limited_without_a_requested_wait_backs_off_to_a_minute(rate_limited: int, wait: float) -> None:
    assert snapshot_retry_delay_s(0, rate_limited) == wait


def test_a_requested_wait_is_waited_out_but_never_shortens_the_schedule() -> None:
    assert snapshot_retry_delay_s(0, 1, 12.0) == 12.0
    assert snapshot_retry_delay_s(3, 1, 1.0) == 5.0
    assert snapshot_retry_delay_s(0, 1, 0.0) == 0.5


@pytest.mark.parametrize(
    ("status", "message", "limited"),
    [
        (429, TOO_MANY, True),
        (
            418,
            {"code": -1003, "msg": "Way too much request weight used; IP banned until 1733300060000."},
            True,
        ),
        (400, {"code": -1003, "msg": "too many"}, True),  # the code alone says so
        (400, {"code": -1121, "msg": "Invalid symbol."}, False),
        (503, "Service Unavailable", False),
        (None, None, False),
    ],
)
def test_rate_limited_answers(status: object, message: object, limited: bool) -> None:
    assert is_rate_limited(status, message) is limited


@pytest.mark.parametrize(
    ("headers", "message", "seconds"),
    [
        ({"Retry-After": "12"}, TOO_MANY, 12.0),
        ({"retry-after": "3"}, None, 3.0),  # HTTP/2 layers keep header names in lower case
        ({"RETRY-AFTER": "100000"}, None, MAX_WAIT_S),
        ({}, TOO_MANY, None),  # what NautilusTrader 1.221 hands over: no headers at all
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, None, None),
        ({"Retry-After": "-5"}, None, None),
        ({"Retry-After": "nan"}, None, None),
        (
            None,
            {"code": -1003, "msg": f"Way too much request weight used; IP banned until {NOW_MS + 45_500}."},
            45.5,
        ),
        ({}, {"code": -1003, "msg": f"IP banned until {NOW_MS + 86_400_000}."}, MAX_WAIT_S),
        ({}, {"code": -1003, "msg": f"IP banned until {NOW_MS - 1_000}."}, 0.0),  # already over
        ({}, "IP banned until 1733300030000.", 30.0),  # a body that was not JSON
    ],
)
def test_requested_wait(headers: object, message: object, seconds: float | None) -> None:
    assert requested_wait_s(headers, message, NOW_MS) == seconds


def test_stuck_once_the_schedule_is_used_up_or_a_wait_exceeds_it() -> None:
    assert not stuck(0, 0.5)
    assert not stuck(3, 5.0)
    assert stuck(4, 5.0)  # the fifth failure in a row
    assert stuck(0, 10.0)  # rate-limited: the book stays unsynced at least 10 s

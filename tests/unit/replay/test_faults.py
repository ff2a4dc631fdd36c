"""Fault requests and their lifetimes (ntplatform.replay.faults), without a server."""

from __future__ import annotations

import pytest

from ntplatform.replay.faults import (
    DROP_CONNECTIONS,
    HTTP_429,
    MUTE,
    SEQUENCE_GAP,
    STALL,
    FaultRequest,
    FaultRequestError,
    FaultSwitch,
    parse_request,
)

SYMBOLS = ("BTCUSDT", "ETHUSDT")
S = 1_000_000_000
T0 = 1_000 * S


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"fault": "drop_connections"}, FaultRequest(DROP_CONNECTIONS)),
        ({"fault": "stall", "seconds": 10}, FaultRequest(STALL, 10.0)),
        ({"fault": "stall", "seconds": 0.5, "symbol": "ethusdt"}, FaultRequest(STALL, 0.5, "ETHUSDT")),
        ({"fault": "mute", "seconds": 30, "symbol": "btcusdt"}, FaultRequest(MUTE, 30.0, "BTCUSDT")),
        ({"fault": "mute", "seconds": 3600}, FaultRequest(MUTE, 3600.0)),
        ({"fault": "http_429", "seconds": 3}, FaultRequest(HTTP_429, 3.0)),
        ({"fault": "sequence_gap", "symbol": "BTCUSDT"}, FaultRequest(SEQUENCE_GAP, None, "BTCUSDT")),
        ({"fault": "sequence_gap"}, FaultRequest(SEQUENCE_GAP)),
    ],
)
def test_parse_request_valid_body_returns_request(body, expected):
    assert parse_request(body, SYMBOLS) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (["stall"], "the body must be a JSON object"),
        (
            {},
            "'fault' must be one of drop_connections, stall, mute, http_429, sequence_gap, stale_snapshot; ",
        ),
        ({"fault": "explode"}, "got 'explode'"),
        ({"fault": "stall"}, "stall needs 'seconds' (a number > 0 and <= 3600); none given"),
        ({"fault": "stall", "seconds": 0}, "stall needs 'seconds': a number > 0 and <= 3600; got 0"),
        ({"fault": "mute"}, "mute needs 'seconds' (a number > 0 and <= 3600); none given"),
        (
            {"fault": "mute", "symbol": "BTCUSDT"},
            "mute needs 'seconds' (a number > 0 and <= 3600); none given",
        ),
        ({"fault": "mute", "seconds": 3601}, "mute needs 'seconds': a number > 0 and <= 3600; got 3601"),
        ({"fault": "mute", "seconds": 1, "symbol": "XRPUSDT"}, "served symbol (BTCUSDT, ETHUSDT)"),
        (
            {"fault": "mute", "seconds": 1, "stream": "btcusdt@trade"},
            "mute takes only fault, seconds, symbol",
        ),
        ({"fault": "http_429", "seconds": "10"}, "got '10'"),
        ({"fault": "http_429", "seconds": True}, "got True"),
        ({"fault": "http_429", "seconds": 7200}, "got 7200"),
        ({"fault": "stall", "seconds": float("nan")}, "got nan"),
        ({"fault": "stall", "seconds": 1, "symbol": "XRPUSDT"}, "served symbol (BTCUSDT, ETHUSDT)"),
        ({"fault": "sequence_gap", "symbol": 1}, "got 1"),
        ({"fault": "http_429", "seconds": 1, "symbol": "BTCUSDT"}, "http_429 takes only fault, seconds"),
        ({"fault": "drop_connections", "seconds": 1}, "drop_connections takes only fault; got seconds"),
        ({"fault": "sequence_gap", "seconds": 1}, "sequence_gap takes only fault, symbol; got seconds"),
    ],
)
def test_parse_request_bad_body_names_the_problem_and_what_is_allowed(body, message):
    with pytest.raises(FaultRequestError) as raised:
        parse_request(body, SYMBOLS)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_timed_fault_is_active_until_its_seconds_pass_then_expires():
    switch = FaultSwitch(SYMBOLS)
    fault = switch.inject(FaultRequest(STALL, 2.0, "BTCUSDT"), T0)

    assert switch.active(T0 + 2 * S - 1) == [fault]
    assert switch.expire(T0 + 2 * S - 1) == []
    assert switch.active(T0 + 2 * S) == []
    assert switch.expire(T0 + 2 * S) == [fault]
    assert switch.expire(T0 + 3 * S) == []


def test_stall_of_one_symbol_leaves_the_others_flowing():
    switch = FaultSwitch(SYMBOLS)
    switch.inject(FaultRequest(STALL, 1.0, "BTCUSDT"), T0)

    assert switch.stalled("BTCUSDT", T0)
    assert not switch.stalled("ETHUSDT", T0)
    assert not switch.stalled("BTCUSDT", T0 + S)


def test_stall_without_symbol_stalls_every_symbol():
    switch = FaultSwitch(SYMBOLS)
    switch.inject(FaultRequest(STALL, 1.0), T0)

    assert all(switch.stalled(symbol, T0 + S // 2) for symbol in SYMBOLS)


def test_muted_through_ns_is_the_injection_time_of_the_mute_in_force():
    switch = FaultSwitch(SYMBOLS)
    assert switch.muted_through_ns("BTCUSDT", T0) is None

    switch.inject(FaultRequest(MUTE, 2.0, "BTCUSDT"), T0)

    assert switch.muted_through_ns("BTCUSDT", T0) == T0
    assert switch.muted_through_ns("BTCUSDT", T0 + 2 * S - 1) == T0
    assert switch.muted_through_ns("ETHUSDT", T0) is None
    assert switch.muted_through_ns("BTCUSDT", T0 + 2 * S) is None
    assert not switch.stalled("BTCUSDT", T0)  # a mute is not a stall


def test_muted_through_ns_of_overlapping_mutes_follows_the_latest_active_one():
    # Every symbol muted at T0 for 10 s; BTCUSDT muted again at T0 + 1 s for 2 s.
    switch = FaultSwitch(SYMBOLS)
    switch.inject(FaultRequest(MUTE, 10.0), T0)
    switch.inject(FaultRequest(MUTE, 2.0, "BTCUSDT"), T0 + S)

    # While both hold, a BTCUSDT subscription made between them is muted by the second.
    assert switch.muted_through_ns("BTCUSDT", T0 + 2 * S) == T0 + S
    assert switch.muted_through_ns("ETHUSDT", T0 + 2 * S) == T0
    # The second has run out: only subscriptions older than the first stay muted.
    assert switch.muted_through_ns("BTCUSDT", T0 + 3 * S) == T0
    assert switch.muted_through_ns("BTCUSDT", T0 + 10 * S) is None


def test_mute_is_listed_with_remaining_seconds_and_cleared():
    switch = FaultSwitch(SYMBOLS)
    mute = switch.inject(FaultRequest(MUTE, 30.0, "ETHUSDT"), T0)

    assert [fault.describe(T0 + 10 * S) for fault in switch.active(T0 + 10 * S)] == [
        {"id": 1, "fault": MUTE, "symbols": ["ETHUSDT"], "seconds": 30.0, "remaining_s": 20.0}
    ]
    assert switch.clear() == [mute]
    assert switch.muted_through_ns("ETHUSDT", T0 + 10 * S) is None


def test_rate_limited_s_counts_down_to_the_latest_429_fault():
    switch = FaultSwitch(SYMBOLS)
    assert switch.rate_limited_s(T0) is None

    switch.inject(FaultRequest(HTTP_429, 5.0), T0)
    switch.inject(FaultRequest(HTTP_429, 2.0), T0 + S)

    assert switch.rate_limited_s(T0 + S) == pytest.approx(4.0)
    assert switch.rate_limited_s(T0 + 5 * S) is None


def test_drop_connections_is_instant_and_never_listed():
    switch = FaultSwitch(SYMBOLS)
    fault = switch.inject(FaultRequest(DROP_CONNECTIONS), T0)

    assert fault.kind == DROP_CONNECTIONS
    assert switch.active(T0) == []


def test_sequence_gap_is_spent_once_per_symbol():
    switch = FaultSwitch(SYMBOLS)
    fault = switch.inject(FaultRequest(SEQUENCE_GAP), T0)

    assert switch.active(T0 + 3600 * S) == [fault]  # one-shot faults wait to be applied
    assert switch.take_gap("BTCUSDT") == fault
    assert not switch.gap_pending("BTCUSDT")
    assert switch.gap_pending("ETHUSDT")
    assert switch.take_gap("BTCUSDT") is None
    assert switch.take_gap("ETHUSDT") is not None
    assert switch.active(T0) == []


def test_clear_forgets_every_fault_and_returns_them():
    switch = FaultSwitch(SYMBOLS)
    stall = switch.inject(FaultRequest(STALL, 5.0), T0)
    gap = switch.inject(FaultRequest(SEQUENCE_GAP, None, "ETHUSDT"), T0)

    assert switch.clear() == [stall, gap]
    assert switch.active(T0) == []
    assert not switch.stalled("BTCUSDT", T0)


def test_describe_shows_symbols_and_remaining_seconds():
    switch = FaultSwitch(SYMBOLS)
    stall = switch.inject(FaultRequest(STALL, 10.0, "BTCUSDT"), T0)
    limit = switch.inject(FaultRequest(HTTP_429, 1.5), T0)

    assert stall.describe(T0 + 4 * S) == {
        "id": 1,
        "fault": STALL,
        "symbols": ["BTCUSDT"],
        "seconds": 10.0,
        "remaining_s": 6.0,
    }
    assert limit.describe(T0 + 2 * S)["remaining_s"] == 0
    assert limit.describe(T0)["symbols"] is None

"""Fault requests, their lifetimes (ntplatform.replay.faults) and how the server applies them."""

from __future__ import annotations

import argparse
import io

import orjson
import pytest

from ntplatform.logs import EventLog
from ntplatform.replay import fault_cli
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
from ntplatform.replay.recording import load_recording
from ntplatform.replay.server import ReplayExchange
from ntplatform.replay.streams import Connection

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
        ({}, "'fault' must be one of drop_connections, stall, mute, http_429, sequence_gap; got None"),
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


# -- the server applying stall, mute and sequence_gap (no network: connections queue frames) --


class _Clock:
    def __init__(self) -> None:
        self.now_ns = T0

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
def exchange(write_recording, spot_lines):
    recording = load_recording(write_recording(spot_lines))
    log = EventLog("replay-exchange", stream=io.StringIO())
    return ReplayExchange([recording], {"symbols": []}, log=log, clock_ns=_Clock())


@pytest.fixture
def two_symbols(write_recording, spot_lines):
    """An exchange serving the recording as BTCUSDT and, under an alias, as ETHUSDT."""
    recording = load_recording(write_recording(spot_lines))
    log = EventLog("replay-exchange", stream=io.StringIO())
    aliases = {"ETHUSDT": "BTCUSDT"}
    return ReplayExchange([recording], {"symbols": []}, aliases=aliases, log=log, clock_ns=_Clock())


def _listener(exchange: ReplayExchange, *streams: str, combined: bool = False) -> Connection:
    connection = Connection(socket=None, combined=combined, peer="test")  # type: ignore[arg-type]
    exchange.hub.add(connection, streams)
    return connection


def _received(connection: Connection) -> list[dict]:
    received = [orjson.loads(frame) for frame in connection._queue]
    connection._queue.clear()
    return received


def _log_events(exchange: ReplayExchange) -> list[dict]:
    stream = exchange.log._stream
    assert isinstance(stream, io.StringIO)
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_stall_withholds_messages_while_the_book_advances_then_resumes_with_a_gap(exchange):
    client = _listener(exchange, "btcusdt@depth@100ms", "btcusdt@trade")
    exchange.faults.inject(FaultRequest(STALL, 0.15, "BTCUSDT"), T0)

    exchange.release_once(T0 + 120_000_000)
    during = _received(client)
    exchange.release_once(T0 + 300_000_000)
    after = _received(client)

    assert during == []
    assert exchange.replays["BTCUSDT"].book.update_id == 110
    assert [(m["U"], m["u"]) for m in after if m["e"] == "depthUpdate"] == [(109, 110)]
    assert [m["t"] for m in after if m["e"] == "trade"] == [8]
    cleared = [e for e in _log_events(exchange) if e["event"] == "fault_cleared"]
    assert [(e["fault"], e["reason"]) for e in cleared] == [(STALL, "expired")]


def _by_stream(connection: Connection) -> dict[str, list[tuple[int, int] | int]]:
    """What a combined connection received: depth (U, u) pairs and trade ids per stream."""
    received: dict[str, list[tuple[int, int] | int]] = {}
    for message in _received(connection):
        data = message["data"]
        received.setdefault(message["stream"], []).append(
            (data["U"], data["u"]) if "U" in data else data["t"]
        )
    return received


def test_mute_silences_subscriptions_open_at_injection_until_resubscribed_or_expired(two_symbols):
    exchange, clock = two_symbols, two_symbols.clock_ns
    muted = _listener(exchange, "btcusdt@depth@100ms", "btcusdt@trade", "ethusdt@depth@100ms", combined=True)
    resubscribing = _listener(exchange, "btcusdt@depth@100ms", "btcusdt@trade", combined=True)
    clock.now_ns = T0 + 1
    exchange.faults.inject(FaultRequest(MUTE, 0.15, "BTCUSDT"), clock.now_ns)  # until T0 + 150 ms + 1
    clock.now_ns = T0 + 2
    fresh = _listener(exchange, "btcusdt@depth@100ms", combined=True)
    for request in (
        '{"method":"UNSUBSCRIBE","params":["btcusdt@depth@100ms"],"id":1}',
        '{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":2}',
    ):
        exchange.hub.handle_request(resubscribing, request)
    _received(resubscribing)  # the two answers

    exchange.release_once(T0 + 120_000_000)
    during = [_by_stream(connection) for connection in (muted, resubscribing, fresh)]
    exchange.release_once(T0 + 300_000_000)
    after = [_by_stream(connection) for connection in (muted, resubscribing, fresh)]

    assert during == [
        {"ethusdt@depth@100ms": [(101, 105), (106, 108)]},  # BTCUSDT silent, ETHUSDT flows
        {"btcusdt@depth@100ms": [(101, 105), (106, 108)]},  # re-subscribed depth only, no trade
        {"btcusdt@depth@100ms": [(101, 105), (106, 108)]},  # subscribed after the injection
    ]
    assert after == [
        {"btcusdt@depth@100ms": [(109, 110)], "btcusdt@trade": [8], "ethusdt@depth@100ms": [(109, 110)]},
        {"btcusdt@depth@100ms": [(109, 110)], "btcusdt@trade": [8]},
        {"btcusdt@depth@100ms": [(109, 110)]},
    ]
    cleared = [e for e in _log_events(exchange) if e["event"] == "fault_cleared"]
    assert [(e["fault"], e["reason"], e["symbols"]) for e in cleared] == [(MUTE, "expired", ["BTCUSDT"])]


def test_sequence_gap_waits_for_a_listener_that_is_not_muted(exchange):
    muted = _listener(exchange, "btcusdt@depth@100ms")
    exchange.faults.inject(FaultRequest(MUTE, 0.15, "BTCUSDT"), T0)
    exchange.faults.inject(FaultRequest(SEQUENCE_GAP, None, "BTCUSDT"), T0)

    exchange.release_once(T0 + 120_000_000)  # only a muted listener: the gap waits
    pending = exchange.faults.gap_pending("BTCUSDT")
    exchange.release_once(T0 + 300_000_000)  # the mute has run out: 109-110 is skipped

    assert pending
    assert _received(muted) == []
    assert not exchange.faults.gap_pending("BTCUSDT")


def test_sequence_gap_skips_one_depth_event_and_the_snapshot_still_advances(exchange):
    client = _listener(exchange, "btcusdt@depth@100ms")
    exchange.faults.inject(FaultRequest(SEQUENCE_GAP, None, "BTCUSDT"), T0)

    exchange.release_once(T0 + 150_000_000)
    sent = [(m["U"], m["u"]) for m in _received(client)]
    snapshot = exchange.replays["BTCUSDT"].depth_snapshot(10)

    assert sent == [(106, 108)]  # 101-105 was skipped
    assert snapshot["lastUpdateId"] == 108
    assert snapshot["bids"] == [["9.00", "2.0"]]  # 10.00 set by 101-105, removed by 106-108
    assert exchange.faults.active(T0) == []
    applied = next(e for e in _log_events(exchange) if e["event"] == "fault_cleared")
    assert applied["reason"] == "applied"
    assert (applied["skipped_first_update_id"], applied["skipped_update_id"]) == (101, 105)


def test_sequence_gap_waits_for_a_depth_listener(exchange):
    exchange.faults.inject(FaultRequest(SEQUENCE_GAP, None, "BTCUSDT"), T0)
    exchange.release_once(T0 + 120_000_000)  # nobody listens: 101-105 and 106-108 go unseen
    client = _listener(exchange, "btcusdt@depth@100ms")

    exchange.release_once(T0 + 300_000_000)

    assert _received(client) == []  # 109-110, the first event someone would see, is skipped
    assert not exchange.faults.gap_pending("BTCUSDT")


# -- the CLI --


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fault_cli.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["list"], ("GET", None)),
        (["clear"], ("DELETE", None)),
        (["drop"], ("POST", {"fault": DROP_CONNECTIONS})),
        (
            ["stall", "--seconds", "6", "--symbol", "BTCUSDT"],
            ("POST", {"fault": STALL, "seconds": 6.0, "symbol": "BTCUSDT"}),
        ),
        (["mute", "--seconds", "30"], ("POST", {"fault": MUTE, "seconds": 30.0})),
        (
            ["mute", "--seconds", "5", "--symbol", "ETHUSDT"],
            ("POST", {"fault": MUTE, "seconds": 5.0, "symbol": "ETHUSDT"}),
        ),
        (["429", "--seconds", "10"], ("POST", {"fault": HTTP_429, "seconds": 10.0})),
        (["gap", "--symbol", "ETHUSDT"], ("POST", {"fault": SEQUENCE_GAP, "symbol": "ETHUSDT"})),
    ],
)
def test_fault_cli_action_maps_to_request(argv, expected):
    assert fault_cli.request_of(_cli(argv)) == expected


def test_fault_cli_unreachable_exchange_prints_one_line_and_exits_1(capsys):
    from tests.conftest import free_port

    code = fault_cli.run(_cli(["--exchange", f"http://127.0.0.1:{free_port()}", "list"]))

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("fault: cannot reach the replay exchange at http://127.0.0.1:")
    assert captured.out == ""


def test_fault_cli_non_http_exchange_is_refused_with_exit_2(capsys):
    code = fault_cli.run(_cli(["--exchange", "file:///etc/passwd", "list"]))

    assert code == 2
    assert "--exchange must be an http:// or https:// URL" in capsys.readouterr().err

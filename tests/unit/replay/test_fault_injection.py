"""How the replay exchange applies stall, mute, sequence_gap and stale_snapshot (no network)."""

from __future__ import annotations

import io

import orjson
import pytest

from ntplatform.logs import EventLog
from ntplatform.replay.faults import MUTE, SEQUENCE_GAP, STALE_SNAPSHOT, STALL, FaultRequest
from ntplatform.replay.recording import load_recording
from ntplatform.replay.server import ReplayExchange
from ntplatform.replay.streams import Connection

S = 1_000_000_000
T0 = 1_000 * S


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


def test_stale_snapshot_repeats_the_first_depth_answer_of_a_symbol_until_it_expires(two_symbols):
    clock = two_symbols.clock_ns
    btc, eth = two_symbols.replays["BTCUSDT"], two_symbols.replays["ETHUSDT"]
    two_symbols.faults.inject(FaultRequest(STALE_SNAPSHOT, 1.0, "BTCUSDT"), T0)
    first = two_symbols.rest._depth_answer(btc, 10)

    two_symbols.release_once(T0 + 150_000_000)  # both books apply 101-105 and 106-108
    clock.now_ns = T0 + 150_000_000
    during = two_symbols.rest._depth_answer(btc, 10)
    other = two_symbols.rest._depth_answer(eth, 10)
    clock.now_ns = T0 + S  # the fault has run out
    after = two_symbols.rest._depth_answer(btc, 10)

    assert first["lastUpdateId"] == 103  # the recording's snapshot
    assert during == first  # the book moved on; the answer did not
    assert other["lastUpdateId"] == 108  # another symbol is answered as it is now
    assert after["lastUpdateId"] == 108
    assert after["bids"] == [["9.00", "2.0"]]

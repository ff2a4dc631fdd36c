"""Stream names, subscriptions and request answers (ntplatform.replay.streams)."""

from __future__ import annotations

import orjson
import pytest

from ntplatform.logs import EventLog
from ntplatform.replay.recording import AGG_TRADE, DEPTH, TRADE
from ntplatform.replay.streams import Connection, StreamHub, symbol_streams


class _NullStream:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _Clock:
    def __init__(self) -> None:
        self.now_ns = 1_000

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
def clock():
    return _Clock()


@pytest.fixture
def hub(clock):
    return StreamHub(EventLog("replay-exchange", stream=_NullStream()), clock)


def _connection(combined: bool = True) -> Connection:
    return Connection(socket=None, combined=combined, peer="test")  # type: ignore[arg-type]


def _sent(connection: Connection) -> list:
    return [orjson.loads(frame) for frame in connection._queue]


def test_symbol_streams_spot_names():
    streams = symbol_streams("BTCUSDT", "spot", {DEPTH, TRADE})

    assert streams.by_channel[DEPTH] == (
        "btcusdt@depth",
        "btcusdt@depth@100ms",
        "btcusdt@depth@1000ms",
    )
    assert streams.by_channel[TRADE] == ("btcusdt@trade",)
    assert streams.agg_from_trade == ("btcusdt@aggTrade",)
    assert streams.partial["btcusdt@depth20@100ms"] == 20


def test_symbol_streams_futures_names_include_zero_ms_depth():
    streams = symbol_streams("BTCUSDT", "usdm", {DEPTH, TRADE, AGG_TRADE})

    assert "btcusdt@depth@0ms" in streams.by_channel[DEPTH]
    assert streams.agg_from_trade == ()  # recorded aggTrade is served as recorded
    assert "btcusdt@depth5@0ms" in streams.partial


def test_subscribe_then_list_subscriptions(hub):
    connection = _connection()
    hub.add(connection, ["btcusdt@depth@100ms"])

    hub.handle_request(connection, '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
    hub.handle_request(connection, '{"method":"LIST_SUBSCRIPTIONS","id":2}')

    assert _sent(connection) == [
        {"result": None, "id": 1},
        {"result": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 2},
    ]
    assert hub.listened("btcusdt@trade")


def test_unsubscribe_stops_delivery(hub):
    connection = _connection()
    hub.add(connection, ["btcusdt@trade"])

    hub.handle_request(connection, '{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":7}')
    hub.publish("btcusdt@trade", b'{"t":1}')

    assert _sent(connection) == [{"result": None, "id": 7}]
    assert not hub.listened("btcusdt@trade")


def test_publish_wraps_for_combined_and_not_for_raw_connections(hub):
    combined, raw = _connection(combined=True), _connection(combined=False)
    hub.add(combined, ["btcusdt@trade"])
    hub.add(raw, ["btcusdt@trade"])

    hub.publish("btcusdt@trade", b'{"t":1}')

    assert _sent(combined) == [{"stream": "btcusdt@trade", "data": {"t": 1}}]
    assert _sent(raw) == [{"t": 1}]


@pytest.mark.parametrize(
    ("text", "code", "request_id"),
    [
        ("{not json", 3, None),
        ('{"method":"SUBSCRIBE","params":"btcusdt@trade","id":3}', 2, 3),
        ('{"method":"SUBSCRIBE","params":[42],"id":4}', 2, 4),
        ('{"method":"FLY","params":[],"id":5}', 2, 5),
        ('{"method":"SUBSCRIBE","params":[],"id":-1}', 2, None),
    ],
)
def test_malformed_request_answers_binance_error(hub, text, code, request_id):
    connection = _connection()
    hub.add(connection, [])

    hub.handle_request(connection, text)

    (answer,) = _sent(connection)
    assert answer["error"]["code"] == code
    assert answer["error"]["msg"]
    assert answer["id"] == request_id


def test_set_property_combined_switches_envelope(hub):
    connection = _connection(combined=False)
    hub.add(connection, ["btcusdt@trade"])

    hub.handle_request(connection, '{"method":"SET_PROPERTY","params":["combined",true],"id":1}')
    hub.handle_request(connection, '{"method":"GET_PROPERTY","params":["combined"],"id":2}')

    assert _sent(connection)[-1] == {"result": True, "id": 2}
    assert connection.combined


def test_connection_past_backlog_limit_is_marked_too_slow(monkeypatch):
    monkeypatch.setattr("ntplatform.replay.streams.MAX_BACKLOG", 3)
    connection = _connection()

    for _ in range(4):
        connection.send(b"{}")

    assert connection.too_slow
    assert _sent(connection) == []


def test_subscribe_records_when_each_stream_was_subscribed(hub, clock):
    connection = _connection()
    hub.add(connection, ["btcusdt@trade"])
    clock.now_ns = 2_000

    hub.subscribe(connection, ["btcusdt@trade", "btcusdt@depth"])  # trade is already subscribed

    assert connection.streams == {"btcusdt@trade": 1_000, "btcusdt@depth": 2_000}


def test_publish_muted_skips_subscriptions_made_up_to_that_time(hub, clock):
    old, new = _connection(), _connection()
    hub.add(old, ["btcusdt@trade"])  # subscribed at 1000
    clock.now_ns = 1_001
    hub.add(new, ["btcusdt@trade"])

    hub.publish("btcusdt@trade", b'{"t":1}', muted_through_ns=1_000)

    assert _sent(old) == []
    assert _sent(new) == [{"stream": "btcusdt@trade", "data": {"t": 1}}]
    assert hub.listened("btcusdt@trade", muted_through_ns=1_000)
    assert not hub.listened("btcusdt@trade", muted_through_ns=1_001)


def test_unsubscribe_then_subscribe_renews_the_subscription_time(hub, clock):
    connection = _connection()
    hub.add(connection, ["btcusdt@trade", "btcusdt@depth"])  # at 1000
    clock.now_ns = 3_000

    hub.handle_request(connection, '{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":1}')
    hub.handle_request(connection, '{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":2}')
    hub.handle_request(connection, '{"method":"SUBSCRIBE","params":["btcusdt@depth"],"id":3}')
    hub.publish("btcusdt@trade", b'{"t":1}', muted_through_ns=2_000)
    hub.publish("btcusdt@depth", b'{"u":1}', muted_through_ns=2_000)

    assert connection.streams == {"btcusdt@depth": 1_000, "btcusdt@trade": 3_000}
    assert _sent(connection)[-1] == {"stream": "btcusdt@trade", "data": {"t": 1}}  # depth: still muted

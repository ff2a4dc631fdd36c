"""Report writes go through the atomic lease-and-token check in a real Redis."""

from __future__ import annotations

import io
import json

import pytest

from ntplatform.logs import EventLog
from ntplatform.settings import load_settings
from producer.health import NodeState
from producer.metrics import ProducerMetrics
from producer.publisher import ReportPublisher
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def _report(age: int = 5) -> dict:
    return {"schema_version": 1, "symbol": "BTCUSDT", "data_age_ms": age, "best_bid": 1.0}


@pytest.fixture
def publisher_parts(redis_server):
    settings = load_settings({"REDIS_URL": redis_server.url, "SYMBOLS": "BTCUSDT", "NT_LEASE_TTL_MS": "1000"})
    metrics = ProducerMetrics()
    state = NodeState(settings.node_id, multi_instance=False)
    log_stream = io.StringIO()
    publisher = ReportPublisher(settings, metrics, state, EventLog("producer", "debug", log_stream))
    publisher.set_available(list(settings.symbols))  # as the actor does once the exchange answered
    publisher.start()
    yield publisher, metrics, log_stream, redis_server.client()
    publisher.stop()


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_publisher_writes_report_and_stream_with_token_and_seq(publisher_parts):
    publisher, metrics, _, client = publisher_parts
    wait_for(lambda: publisher.owned_symbols() == ["BTCUSDT"], 10, "the lease")
    publisher.submit({"BTCUSDT": _report()})
    wait_for(lambda: client.xlen("report:stream:BTCUSDT") == 1, 10, "one stream entry")
    publisher.submit({"BTCUSDT": _report()})
    wait_for(lambda: client.xlen("report:stream:BTCUSDT") == 2, 10, "two stream entries")

    latest = json.loads(client.get("report:BTCUSDT"))
    assert latest["seq"] == 2
    assert latest["node_id"] == "producer-node-001"
    assert latest["fencing_token"] == int(client.get("report:writer:token:BTCUSDT")) == 1
    assert client.get("report:writer:BTCUSDT") == b"producer-node-001"
    assert 0 < client.pttl("report:writer:BTCUSDT") <= 1000
    assert metrics.report_publish.labels("BTCUSDT")._value.get() == 2


def test_publisher_refused_by_newer_token_counts_conflict_and_drops_symbol(publisher_parts):
    publisher, metrics, log_stream, client = publisher_parts
    wait_for(lambda: publisher.owned_symbols() == ["BTCUSDT"], 10, "the lease")
    publisher.submit({"BTCUSDT": _report()})
    wait_for(lambda: client.xlen("report:stream:BTCUSDT") == 1, 10, "the first write")

    # Another writer takes over: new holder, new token (what a failover does).
    client.set("report:writer:BTCUSDT", "producer-node-002", px=60_000)
    client.incr("report:writer:token:BTCUSDT")
    publisher.submit({"BTCUSDT": _report()})

    wait_for(lambda: metrics.lease_conflicts.labels("BTCUSDT")._value.get() == 1, 10, "a lease conflict")
    assert client.xlen("report:stream:BTCUSDT") == 1, "the refused write must not land"
    assert json.loads(client.get("report:BTCUSDT"))["fencing_token"] == 1
    conflict = next(e for e in _events(log_stream) if e["event"] == "lease_conflict")
    assert conflict["reason"] == "fencing_token_mismatch"
    assert conflict["symbol"] == "BTCUSDT"
    assert "BTCUSDT" not in publisher.owned_symbols()


def test_publisher_reacquires_after_other_holder_expires_with_next_token(publisher_parts):
    publisher, _, _, client = publisher_parts
    wait_for(lambda: publisher.owned_symbols() == ["BTCUSDT"], 10, "the lease")
    client.set("report:writer:BTCUSDT", "producer-node-002", px=300)
    client.incr("report:writer:token:BTCUSDT")  # token 2 belongs to node 002
    wait_for(lambda: "BTCUSDT" not in publisher.owned_symbols(), 10, "losing the lease")
    wait_for(lambda: client.get("report:writer:BTCUSDT") == b"producer-node-001", 10, "re-acquiring")
    assert int(client.get("report:writer:token:BTCUSDT")) == 3
    publisher.submit({"BTCUSDT": _report()})
    wait_for(lambda: client.get("report:BTCUSDT"), 10, "a write under the new token")
    assert json.loads(client.get("report:BTCUSDT"))["fencing_token"] == 3


def test_publisher_stop_releases_lease(redis_server):
    settings = load_settings({"REDIS_URL": redis_server.url, "SYMBOLS": "BTCUSDT"})
    state = NodeState(settings.node_id, multi_instance=False)
    publisher = ReportPublisher(settings, ProducerMetrics(), state, EventLog("producer", "error"))
    publisher.set_available(list(settings.symbols))  # as the actor does once the exchange answered
    publisher.start()
    client = redis_server.client()
    wait_for(lambda: client.get("report:writer:BTCUSDT"), 10, "the lease")
    publisher.stop()
    assert client.get("report:writer:BTCUSDT") is None
    assert client.get("report:writer:token:BTCUSDT") == b"1", "tokens are never reset"


def test_new_writer_continues_seq_from_the_stream_when_kv_reports_are_off(redis_server):
    """Another writer left seq 41 in the stream only (NT_ENABLE_KV_REPORTS=0): the next is 42."""
    client = redis_server.client()
    client.xadd("report:stream:BTCUSDT", {"report": json.dumps({**_report(), "seq": 41})})
    env = {"REDIS_URL": redis_server.url, "SYMBOLS": "BTCUSDT", "NT_ENABLE_KV_REPORTS": "false"}
    settings = load_settings(env)
    state = NodeState(settings.node_id, multi_instance=False)
    publisher = ReportPublisher(settings, ProducerMetrics(), state, EventLog("producer", "error"))
    publisher.set_available(list(settings.symbols))  # as the actor does once the exchange answered
    publisher.start()
    try:
        wait_for(lambda: publisher.owned_symbols() == ["BTCUSDT"], 10, "the lease")
        publisher.submit({"BTCUSDT": _report()})
        wait_for(lambda: client.xlen("report:stream:BTCUSDT") == 2, 10, "the new writer's report")
    finally:
        publisher.stop()
    newest = client.xrevrange("report:stream:BTCUSDT", count=1)[0][1]
    assert json.loads(newest[b"report"])["seq"] == 42
    assert client.get("report:BTCUSDT") is None

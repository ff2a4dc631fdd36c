"""Why a node is degraded, read from the /health document the producer itself writes."""

from __future__ import annotations

import time

from ntplatform import node_health
from producer.health import NodeState

NOW = 1_796_322_401_200


def _body(state: NodeState) -> dict:
    body = state.snapshot()
    assert body["status"] == "degraded"
    return body


def _node(*owned: str) -> NodeState:
    state = NodeState("n1", multi_instance=True)
    state.running = True
    state.redis_connected = True
    state.set_owned(list(owned))
    return state


def test_rate_limited_book_is_named_with_failures_and_when_it_retries() -> None:
    state = _node("BTCUSDT", "ETHUSDT")
    published = time.monotonic()  # both published before BTCUSDT lost sync
    state.update_symbol("BTCUSDT", book_synced=False, snapshot_failures=3, rate_limited=True)
    state.update_symbol("BTCUSDT", snapshot_retry_ms=NOW + 39_600, last_publish_monotonic=published)
    state.update_symbol("ETHUSDT", book_synced=True, data_age_ms=40, last_publish_monotonic=published)
    body = _body(state)
    assert node_health.rate_limited(body, "BTCUSDT", NOW) == "3 failed in a row, next in 39 s"
    assert node_health.rate_limited(body, "ETHUSDT", NOW) is None
    assert node_health.troubles(body, NOW) == [
        "BTCUSDT book waits on rate-limited snapshots (3 failed in a row, next in 39 s)"
    ]
    assert node_health.only_rate_limited(body, NOW)


def test_every_cause_of_degraded_is_named() -> None:
    state = _node("BTCUSDT", "ETHUSDT")
    state.redis_connected = False
    state.duplicate_node_id = True
    state.mismatched_nodes = ["n3"]
    state.unavailable_symbols = ["DOGEUSDT"]
    published = time.monotonic()
    state.update_symbol("BTCUSDT", book_synced=False, last_publish_monotonic=published)
    state.update_symbol("ETHUSDT", book_synced=True, data_age_ms=7_000, last_publish_monotonic=published)
    body = _body(state)
    assert node_health.troubles(body, NOW) == [
        "Redis unreachable from the node",
        "another process uses its node id",
        "coordination settings differ from n3",
        "not listed by the exchange: DOGEUSDT",
        "BTCUSDT book not synced",
        "ETHUSDT market data older than 5 s",
    ]
    assert not node_health.only_rate_limited(body, NOW)


def test_unreachable_or_unknown_symbol_reads_as_nothing() -> None:
    assert node_health.followed(None, "BTCUSDT") == {}
    assert node_health.rate_limited({"symbols": {}}, "BTCUSDT", NOW) is None
    assert node_health.troubles({"status": "starting"}, NOW) == []
    assert not node_health.only_rate_limited({"status": "starting"}, NOW)

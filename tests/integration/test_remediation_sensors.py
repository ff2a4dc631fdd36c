"""The staleness, rebalancing and resubscription-loop sensors, ticked with ``build_sensor_context``.

Fleet state is written into a private Redis; the counters come from the producer's own
``/metrics`` server (``NodeHttpServer`` with a ``ProducerMetrics`` registry the test moves).
Each sensor: healthy -> skip with a reason; a fault -> pending, then exactly one run;
the same fault on the next tick -> no further run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import pytest

from assets import freshness
from ntplatform import keys
from producer.health import NodeState
from producer.http_server import NodeHttpServer
from producer.metrics import ProducerMetrics
from sensors.churn import excessive_rebalancing_sensor, ws_resubscribe_loop_sensor
from sensors.staleness import market_data_staleness_sensor
from tests.conftest import RedisProcess
from tests.integration.fleet_state import (
    OWNED,
    SYMBOLS,
    fleet_of,
    healthy,
    heartbeat,
    op_config,
    redis_ms,
    tick,
)

pytestmark = pytest.mark.integration
NODES = ("n1", "n2", "n3")


def _report(
    server: RedisProcess, symbol: str, node: str, data_age_ms: int, written_ms: int | None = None
) -> None:
    body = {"symbol": symbol, "node_id": node, "seq": 41, "data_age_ms": data_age_ms, "best_bid": 1.0}
    client = server.client()
    client.set(keys.report_key(symbol), json.dumps(body))
    entry = f"{written_ms}-0" if written_ms is not None else "*"
    client.delete(keys.stream_key(symbol))  # the newest entry is what counts; keep ids increasing
    client.xadd(keys.stream_key(symbol), {keys.REPORT_FIELD: json.dumps(body)}, id=entry)


def _fresh_fleet(server: RedisProcess) -> None:
    healthy(server)
    for node in NODES:
        _report(server, OWNED[node][0], node, data_age_ms=40)


def test_staleness_sensor_old_data_one_resubscribe_run(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    _fresh_fleet(redis_server)
    quiet = tick(market_data_staleness_sensor, fleet, None)
    assert quiet.skip_reason is not None
    assert quiet.skip_reason.skip_message == "3 symbols with reports, none stale"

    _report(redis_server, "ETHUSDT", "n2", data_age_ms=8_000)  # n2 publishes, but from a dead feed
    pending = tick(market_data_staleness_sensor, fleet, quiet.cursor)
    assert not pending.run_requests
    assert "symbol_stale:ETHUSDT" in pending.skip_reason.skip_message

    confirmed = tick(market_data_staleness_sensor, fleet, pending.cursor)
    (request,) = confirmed.run_requests
    assert request.job_name == "resubscribe_symbol"
    assert request.run_key.startswith("symbol_stale:ETHUSDT:")
    config = op_config(request)
    assert config["symbols"] == ["ETHUSDT"]
    assert config["nodes"] == ["n2"]
    assert "8000 ms old" in json.loads(config["detected"])[0]["detail"]

    again = tick(market_data_staleness_sensor, fleet, confirmed.cursor)
    assert not again.run_requests
    assert request.run_key in again.skip_reason.skip_message

    _report(redis_server, "ETHUSDT", "n2", data_age_ms=30)  # recovered: the incident closes
    closed = tick(market_data_staleness_sensor, fleet, again.cursor)
    assert closed.skip_reason.skip_message == "3 symbols with reports, none stale"


def test_staleness_sensor_writer_that_stopped_publishing(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    _fresh_fleet(redis_server)
    silent_since = redis_ms(redis_server) - 12_000
    _report(redis_server, "BTCUSDT", "n1", data_age_ms=40, written_ms=silent_since)
    first = tick(market_data_staleness_sensor, fleet, None)
    second = tick(market_data_staleness_sensor, fleet, first.cursor)
    assert not first.run_requests
    (request,) = second.run_requests
    detail = json.loads(op_config(request)["detected"])[0]["detail"]
    assert detail.startswith("no report for 1")  # 12 000 ms and a little more
    assert "although n1 holds the lease" in detail


def test_staleness_sensor_leaves_a_rate_limited_writer_to_back_off(redis_server: RedisProcess) -> None:
    """n2's /health (a real node HTTP server) shows ETHUSDT's snapshots refused by a 429."""
    state = NodeState("n2", True)
    state.update_symbol("ETHUSDT", book_synced=False, snapshot_failures=2, rate_limited=True)
    server = NodeHttpServer("127.0.0.1", 0, ProducerMetrics(), state)
    server.start()
    try:
        fleet = fleet_of(redis_server)
        _fresh_fleet(redis_server)
        heartbeat(redis_server, "n2", metrics_url=f"http://127.0.0.1:{server.port}")
        _report(redis_server, "ETHUSDT", "n2", data_age_ms=40, written_ms=redis_ms(redis_server) - 9_000)
        first = tick(market_data_staleness_sensor, fleet, None)
        second = tick(market_data_staleness_sensor, fleet, first.cursor)
        for result in (first, second):
            assert not result.run_requests
            assert result.skip_reason.skip_message == (
                "ETHUSDT has no fresh reports, but n2's book snapshots are rate-limited by the exchange "
                "(symbol_rate_limited): not resubscribing (that adds requests); the node retries by itself"
            )

        state.update_symbol("ETHUSDT", rate_limited=False)  # the limit is over, the feed still silent
        third = tick(market_data_staleness_sensor, fleet, second.cursor)
        fourth = tick(market_data_staleness_sensor, fleet, third.cursor)
        assert "symbol_stale:ETHUSDT" in third.skip_reason.skip_message
        (request,) = fourth.run_requests
        assert request.job_name == "resubscribe_symbol"
    finally:
        server.stop()


@pytest.fixture
def node_metrics() -> Iterator[dict[str, ProducerMetrics]]:
    """A real producer /metrics server per node; the test moves its counters."""
    servers, registries = [], {}
    for node in NODES:
        metrics = ProducerMetrics()
        server = NodeHttpServer("127.0.0.1", 0, metrics, NodeState(node, True))
        server.start()
        servers.append(server)
        registries[node] = metrics
        registries[f"{node}:url"] = f"http://127.0.0.1:{server.port}"  # type: ignore[assignment]
    yield registries
    for server in servers:
        server.stop()


def _announce(server: RedisProcess, registries: dict, **started: int) -> None:
    healthy(server)
    for node in NODES:
        over = {"metrics_url": registries[f"{node}:url"]}
        if node in started:
            over["started_ms"] = started[node]
        heartbeat(server, node, **over)


def _aged(cursor: str | None, seconds: int) -> str:
    """The cursor with its samples moved ``seconds`` into the past (time passing between ticks)."""
    body = json.loads(cursor or "{}")
    for sample in body.get("history", []):
        sample["at_ms"] -= seconds * 1000
    return json.dumps(body)


def test_rebalancing_sensor_flapping_node(redis_server: RedisProcess, node_metrics: dict) -> None:
    fleet = fleet_of(redis_server)
    _announce(redis_server, node_metrics)
    node_metrics["n1"].hrw_rebalances.inc(2)
    first = tick(excessive_rebalancing_sensor, fleet, None)
    assert "collecting nt_hrw_rebalances_total from 3 nodes" in first.skip_reason.skip_message

    quiet = tick(excessive_rebalancing_sensor, fleet, _aged(first.cursor, 61))
    assert quiet.skip_reason.skip_message.startswith("ownership changes within limits over 6")

    # n3 restarts (new started_ms, counter from 0) and n1 rebalances 6 times within the minute:
    # 6 / 61 s = 0.098/s > 0.05/s.
    node_metrics["n1"].hrw_rebalances.inc(6)
    _announce(redis_server, node_metrics, n3=2_000_003)
    pending = tick(excessive_rebalancing_sensor, fleet, _aged(quiet.cursor, 61))
    assert not pending.run_requests
    assert "excessive_rebalancing:fleet" in pending.skip_reason.skip_message

    node_metrics["n1"].hrw_rebalances.inc(6)
    confirmed = tick(excessive_rebalancing_sensor, fleet, _aged(pending.cursor, 20))
    (request,) = confirmed.run_requests
    assert request.job_name == "diagnose_fleet"
    assert request.run_key.startswith("excessive_rebalancing:fleet:")
    (finding,) = json.loads(op_config(request)["detected"])
    assert "n3 restarted" in finding["detail"]
    assert finding["data"]["restarted"] == ["n3"]
    assert finding["data"]["rate_per_s"]["n1"] > 0.05

    node_metrics["n1"].hrw_rebalances.inc(6)
    again = tick(excessive_rebalancing_sensor, fleet, _aged(confirmed.cursor, 20))
    assert not again.run_requests
    assert request.run_key in again.skip_reason.skip_message


def test_resubscription_loop_sensor_counts_only_unexpected_reasons(
    redis_server: RedisProcess, node_metrics: dict
) -> None:
    fleet = fleet_of(redis_server)
    _announce(redis_server, node_metrics)
    first = tick(ws_resubscribe_loop_sensor, fleet, None)
    # Rebalancing alone (symbol_acquired) is the platform's own doing: no loop.
    node_metrics["n1"].ws_resubscribe.labels("symbol_acquired").inc(40)
    quiet = tick(ws_resubscribe_loop_sensor, fleet, _aged(first.cursor, 61))
    assert quiet.skip_reason.skip_message.startswith("no resubscription loop over 6")

    # n2 reconnects 5 times and resyncs 5 books in 61 s: 10 / 61 = 0.16/s > 0.1/s.
    node_metrics["n2"].ws_resubscribe.labels("reconnect").inc(5)
    node_metrics["n2"].ws_resubscribe.labels("resync").inc(5)
    pending = tick(ws_resubscribe_loop_sensor, fleet, _aged(quiet.cursor, 61))
    assert "ws_resubscribe_loop:n2" in pending.skip_reason.skip_message
    confirmed = tick(ws_resubscribe_loop_sensor, fleet, _aged(pending.cursor, 20))
    (request,) = confirmed.run_requests
    assert request.job_name == "diagnose_fleet"
    assert op_config(request)["nodes"] == ["n2"]
    (finding,) = json.loads(op_config(request)["detected"])
    assert finding["kind"] == "ws_resubscribe_loop"
    assert "reconnect=5" in finding["detail"]
    assert "resync=5" in finding["detail"]
    again = tick(ws_resubscribe_loop_sensor, fleet, _aged(confirmed.cursor, 20))
    assert not again.run_requests


def test_counter_sensors_name_nodes_whose_metrics_cannot_be_read(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    healthy(redis_server)
    for node in NODES:
        heartbeat(redis_server, node, metrics_url="http://127.0.0.1:9")  # nothing listens on port 9
    first = tick(ws_resubscribe_loop_sensor, fleet, None)
    second = tick(ws_resubscribe_loop_sensor, fleet, _aged(first.cursor, 61))
    assert "(n1, n2, n3 not answering /metrics)" in second.skip_reason.skip_message
    assert SYMBOLS  # the fleet's symbols are configured as for the other sensor tests


def _freshness_check(fleet) -> dg.AssetCheckEvaluation:
    defs = dg.Definitions(
        assets=[freshness.report_streams],
        asset_checks=[freshness.check_reports_fresh],
        jobs=[freshness.check_report_freshness],
        resources={"fleet": fleet},
    )
    result = defs.resolve_job_def("check_report_freshness").execute_in_process()
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_report_freshness_asset_check_passes_then_names_the_stale_symbol(redis_server: RedisProcess) -> None:
    fleet = fleet_of(redis_server)
    _fresh_fleet(redis_server)
    fresh = _freshness_check(fleet)
    assert fresh.passed
    assert fresh.description == "3 symbols fresh"

    _report(redis_server, "SOLUSDT", "n3", data_age_ms=7_500)
    stale = _freshness_check(fleet)
    assert not stale.passed
    assert stale.description.startswith(
        "symbol_stale SOLUSDT: latest report (seq 41) carries market data 7500 ms"
    )
    assert stale.metadata["per_symbol"].value["SOLUSDT"]["data_age_ms"] == 7500

"""A fleet's state written straight into a private Redis, for the sensor tests."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from assets.resources import RedisResource
from ntplatform import keys
from sensors.resources import FleetResource
from tests.conftest import RedisProcess

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
STARTED = {"n1": 1_000_001, "n2": 1_000_002, "n3": 1_000_003}
OWNED = {"n1": ["BTCUSDT"], "n2": ["ETHUSDT"], "n3": ["SOLUSDT"]}


def fleet_of(server: RedisProcess, **over: Any) -> FleetResource:
    return FleetResource(redis=RedisResource(url=server.url), symbols=SYMBOLS, **over)


def redis_ms(server: RedisProcess) -> int:
    seconds, micros = server.client().time()
    return int(seconds) * 1000 + int(micros) // 1000


def heartbeat(server: RedisProcess, node: str, **over: Any) -> None:
    body = {
        "node_id": node,
        "pid": 4242,
        "host": "vm",
        "started_ms": STARTED[node],
        "wall_ms": redis_ms(server),
        "owned_symbols": OWNED[node],
        "fencing_tokens": dict.fromkeys(OWNED[node], 1),
        "config_fingerprint": "825beeca6c66",
        "lease_ttl_ms": 2000,
        "min_hold_ms": 2000,
        "heartbeat_interval_ms": 1000,
        "rebalance_interval_sec": 2.5,
        "metrics_port": 9101,
        **over,
    }
    server.client().set(keys.node_key(node), json.dumps(body), px=5000)


def lease(server: RedisProcess, symbol: str, holder: str, token: int = 1, px: int | None = 60_000) -> None:
    client = server.client()
    client.set(keys.writer_key(symbol), holder, px=px)
    client.set(keys.token_key(symbol), token)


def healthy(server: RedisProcess) -> None:
    for node in ("n1", "n2", "n3"):
        heartbeat(server, node)
        lease(server, OWNED[node][0], node)


def tick(sensor: Any, fleet: FleetResource, cursor: str | None) -> dg.SensorResult:
    # FleetResource nests RedisResource, so the resources are built inside a context manager.
    with dg.build_sensor_context(cursor=cursor, resources={"fleet": fleet}) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def op_config(request: dg.RunRequest) -> dict[str, Any]:
    (op_config,) = request.run_config["ops"].values()  # diagnose_fleet or a remediation job: one op
    return dict(op_config["config"])

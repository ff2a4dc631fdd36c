"""Faults injected into the replay exchange, seen from the exchange's side by raw clients.

Each fault is asked for over ``/_replay/faults`` (or ``ntplatform fault``) and observed
as a Binance client would observe it: closed WebSockets, a silent then resumed stream,
a stream silent on an open connection until it is subscribed again, HTTP 429 with
Binance's body, and a diff-depth gap that a fresh snapshot heals.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import PYTHON, SHARED_DATA, free_port, python_env, start_replay_exchange
from tests.integration.replay_client import FollowResult, follow_book
from tests.integration.test_replay_exchange import SHARED, SPOT_BTC, get_json, running_exchange

pytestmark = pytest.mark.integration
FAULTS = "/_replay/faults"


async def send_fault(base: str, body: Any, method: str = "POST") -> tuple[int, Any]:
    """Send one request to the fault endpoint; return the status and the decoded answer."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, base + FAULTS, data=orjson.dumps(body)) as response,
    ):
        return response.status, await response.json(content_type=None)


def _events(log_stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    events = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    return [event for event in events if event["event"] == name]


async def _drain(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    """Every data message received within ``seconds``."""
    received: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            break
        received.append(orjson.loads(message.data))
    return received


def test_drop_connections_closes_every_websocket_and_new_ones_work():
    log_stream = io.StringIO()

    async def scenario() -> tuple[Any, list[Any], dict[str, Any]]:
        async with running_exchange([SHARED / "spot"], log_stream=log_stream) as (_, base):
            ws_base = base.replace("http", "ws")
            async with aiohttp.ClientSession() as http:
                combined = await http.ws_connect(ws_base + "/stream?streams=btcusdt@depth@100ms")
                raw = await http.ws_connect(ws_base + "/ws/ethusdt@trade")
                answer = await send_fault(base, {"fault": "drop_connections"})
                closes = []
                for ws in (combined, raw):
                    while (message := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                        continue
                    closes.append((message.type, ws.close_code))
                async with http.ws_connect(ws_base + "/stream?streams=btcusdt@depth@100ms") as again:
                    resumed = orjson.loads((await again.receive(timeout=5)).data)
        return answer, closes, resumed

    (status, answer), closes, resumed = asyncio.run(scenario())

    assert status == 200
    assert answer["injected"]["fault"] == "drop_connections"
    assert answer["injected"]["connections"] == 2
    assert answer["active"] == []  # a drop happens at once; nothing stays active
    assert closes == [(aiohttp.WSMsgType.CLOSE, 1001)] * 2
    assert resumed["stream"] == "btcusdt@depth@100ms"
    injected = _events(log_stream, "fault_injected")
    assert [(e["fault"], e["connections"]) for e in injected] == [("drop_connections", 2)]


def test_stall_silences_one_symbol_then_resumes_with_a_gap():
    log_stream = io.StringIO()

    async def scenario() -> tuple[list[Any], list[Any], list[Any], Any]:
        async with running_exchange([SHARED / "spot"], speed=2, log_stream=log_stream) as (_, base):
            streams = "btcusdt@depth@100ms/btcusdt@trade/ethusdt@depth@100ms"
            url = base.replace("http", "ws") + f"/stream?streams={streams}"
            async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
                before = await _drain(ws, 1.0)
                answer = await send_fault(base, {"fault": "stall", "seconds": 3, "symbol": "BTCUSDT"})
                await _drain(ws, 0.3)  # frames already queued when the stall began
                during = await _drain(ws, 2.2)
                after = await _drain(ws, 1.5)
        return before, during, after, answer

    before, during, after, (status, answer) = asyncio.run(scenario())

    def btc_depth(messages: list[Any]) -> list[dict[str, Any]]:
        return [m["data"] for m in messages if m["stream"] == "btcusdt@depth@100ms"]

    assert status == 200
    assert answer["injected"]["symbols"] == ["BTCUSDT"]
    assert btc_depth(before), "BTCUSDT flowed before the stall"
    assert [m for m in during if m["stream"].startswith("btcusdt")] == []
    assert any(m["stream"] == "ethusdt@depth@100ms" for m in during), "ETHUSDT kept flowing"
    resumed = btc_depth(after)
    assert resumed, "BTCUSDT resumed after the stall"
    assert resumed[0]["U"] > btc_depth(before)[-1]["u"] + 1  # what was withheld is gone: a gap
    cleared = _events(log_stream, "fault_cleared")
    assert [(e["fault"], e["reason"]) for e in cleared] == [("stall", "expired")]


def _streams_of(messages: list[dict[str, Any]], prefix: str) -> set[str]:
    return {m["stream"] for m in messages if m.get("stream", "").startswith(prefix)}


async def _mute_scenario(base: str) -> dict[str, Any]:
    """One connection through a BTCUSDT mute, another opened during it; what each saw."""
    ws_base = base.replace("http", "ws")
    streams = "btcusdt@depth@100ms/btcusdt@trade/ethusdt@depth@100ms"
    loop = asyncio.get_running_loop()
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{ws_base}/stream?streams={streams}") as ws:
        seen["before"] = await _drain(ws, 1.0)
        asked_at = loop.time()  # the server injects after this, so the mute lasts past asked_at + 6
        seen["injected"] = await send_fault(base, {"fault": "mute", "seconds": 6, "symbol": "BTCUSDT"})
        injected_at = loop.time()
        await _drain(ws, 0.3)  # frames already queued when the mute began
        async with http.ws_connect(f"{ws_base}/stream") as fresh:
            await fresh.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1})
            seen["listed"] = await get_json(base, FAULTS)
            seen["rest"] = await get_json(base, "/api/v3/depth?symbol=BTCUSDT&limit=5")
            seen["during"] = await _drain(ws, 1.5)
            seen["fresh"] = await _drain(fresh, 0.5)
        for request_id, method in ((2, "UNSUBSCRIBE"), (3, "SUBSCRIBE")):
            await ws.send_json({"method": method, "params": ["btcusdt@depth@100ms"], "id": request_id})
        seen["resubscribed"] = await _drain(ws, 1.5)
        seen["until_expiry"] = await _drain(ws, max(0.1, asked_at + 5.8 - loop.time()))
        await asyncio.sleep(max(0.0, injected_at + 6.3 - loop.time()))
        seen["after"] = await _drain(ws, 1.5)
        seen["open"] = not ws.closed
    return seen


def test_mute_silences_open_subscriptions_until_subscribed_again_or_expired(processes, tmp_path):
    port = start_replay_exchange(processes, tmp_path, SHARED_DATA / "spot", speed=2)

    seen = asyncio.run(_mute_scenario(f"http://127.0.0.1:{port}"))

    status, answer = seen["injected"]
    assert status == 200
    assert (answer["injected"]["fault"], answer["injected"]["symbols"]) == ("mute", ["BTCUSDT"])
    (listed,) = seen["listed"][1]["active"]
    assert listed["fault"] == "mute"
    assert 0 < listed["remaining_s"] <= 6
    assert seen["rest"][0] == 200, "REST keeps answering during a mute"
    assert _streams_of(seen["before"], "btcusdt") == {"btcusdt@depth@100ms", "btcusdt@trade"}
    assert _streams_of(seen["during"], "btcusdt") == set(), "the open connection gets no BTCUSDT"
    assert _streams_of(seen["during"], "ethusdt") == {"ethusdt@depth@100ms"}, "ETHUSDT kept flowing"
    assert _streams_of(seen["fresh"], "btcusdt") == {"btcusdt@depth@100ms"}, "a new subscription is served"
    answers = [m for m in seen["resubscribed"] if "stream" not in m]
    assert answers == [{"result": None, "id": 2}, {"result": None, "id": 3}]
    # Subscribed again, depth is back; the trade stream, not re-subscribed, stays muted.
    assert _streams_of(seen["resubscribed"], "btcusdt") == {"btcusdt@depth@100ms"}
    assert _streams_of(seen["until_expiry"], "btcusdt@trade") == set()
    assert _streams_of(seen["after"], "btcusdt") == {"btcusdt@depth@100ms", "btcusdt@trade"}
    assert seen["open"], "the muted connection stayed open"
    log = [orjson.loads(line) for line in processes[0].output().splitlines() if line.startswith("{")]
    faults = [(e["event"], e.get("reason")) for e in log if e.get("fault") == "mute"]
    assert faults == [("fault_injected", None), ("fault_cleared", "expired")]


def test_http_429_answers_binance_body_and_retry_after_until_it_expires():
    async def scenario() -> list[tuple[int, Any, str | None]]:
        async with running_exchange([SPOT_BTC]) as (_, base):
            await send_fault(base, {"fault": "http_429", "seconds": 2})
            answers = []
            async with aiohttp.ClientSession() as http:
                for path in ("/api/v3/depth?symbol=BTCUSDT&limit=5", "/api/v3/ping", FAULTS):
                    async with http.get(base + path) as response:
                        body = await response.json(content_type=None)
                        answers.append((response.status, body, response.headers.get("Retry-After")))
            await asyncio.sleep(2.1)
            status, _ = await get_json(base, "/api/v3/depth?symbol=BTCUSDT&limit=5")
            answers.append((status, None, None))
        return answers

    depth, ping, listing, after = asyncio.run(scenario())

    assert depth[0] == 429
    assert depth[1]["code"] == -1003
    assert depth[1]["msg"].startswith("Too many requests")
    assert depth[2] in ("1", "2")
    assert ping[0] == 429
    assert listing[0] == 200  # the control endpoint is not rate limited
    assert [fault["fault"] for fault in listing[1]["active"]] == ["http_429"]
    assert after[0] == 200


@pytest.mark.parametrize(
    ("recording", "futures"), [(SPOT_BTC, False), (SHARED / "usdm" / "btcusdt_20240808.gz", True)]
)
def test_sequence_gap_is_seen_by_a_client_and_a_fresh_snapshot_resyncs(recording, futures):
    log_stream = io.StringIO()

    async def scenario() -> tuple[FollowResult, int]:
        async with running_exchange([recording], speed=5, log_stream=log_stream) as (_, base):
            follower = asyncio.create_task(follow_book(base, "BTCUSDT", futures, seconds=4))
            await asyncio.sleep(1.5)
            status, _ = await send_fault(base, {"fault": "sequence_gap", "symbol": "BTCUSDT"})
            return await follower, status

    result, status = asyncio.run(scenario())

    assert status == 200
    assert result.gaps == 1
    assert result.syncs == 2
    assert result.mismatches == []
    assert result.matches_after_resync >= 5
    assert result.snapshot_ids == sorted(result.snapshot_ids)
    applied = _events(log_stream, "fault_cleared")
    assert [(e["fault"], e["reason"], e["symbols"]) for e in applied] == [
        ("sequence_gap", "applied", ["BTCUSDT"])
    ]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"fault": "meltdown"}, ["'fault'", "drop_connections, stall, mute, http_429, sequence_gap"]),
        ({"fault": "mute", "symbol": "BTCUSDT"}, ["mute needs 'seconds'"]),
        ({"fault": "stall", "seconds": -1}, ["'seconds'", "> 0"]),
        ({"fault": "stall", "seconds": 1, "symbol": "DOGEUSDT"}, ["'symbol'", "BTCUSDT"]),
        ("stall", ["JSON object"]),
    ],
)
def test_bad_fault_request_answers_400_with_one_line_error(body, names):
    async def scenario() -> tuple[tuple[int, Any], tuple[int, Any]]:
        async with running_exchange([SPOT_BTC]) as (_, base):
            refused = await send_fault(base, body)
            listing = await get_json(base, FAULTS)
        return refused, listing

    (status, answer), (_, listing) = asyncio.run(scenario())

    assert status == 400
    assert set(answer) == {"error"}
    assert "\n" not in answer["error"]
    assert all(name in answer["error"] for name in names), answer["error"]
    assert listing == {"active": []}


def test_fault_cli_drives_a_running_exchange(processes, tmp_path):
    port = start_replay_exchange(processes, tmp_path, SHARED_DATA / "spot")

    def fault(*argv: str) -> subprocess.CompletedProcess:
        command = [PYTHON, "-m", "ntplatform.cli", "fault", "--exchange", f"http://127.0.0.1:{port}"]
        return subprocess.run(
            [*command, *argv], env=python_env(), capture_output=True, text=True, timeout=60, check=False
        )

    stalled = fault("stall", "--seconds", "30", "--symbol", "ETHUSDT")
    muted = fault("mute", "--seconds", "30", "--symbol", "BTCUSDT")
    listed = fault("list")
    refused = fault("429")
    refused_mute = fault("mute", "--symbol", "BTCUSDT")
    cleared = fault("clear")
    dead = subprocess.run(
        [PYTHON, "-m", "ntplatform.cli", "fault", "--exchange", f"http://127.0.0.1:{free_port()}", "drop"],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert stalled.returncode == 0
    assert orjson.loads(stalled.stdout)["injected"]["symbols"] == ["ETHUSDT"]
    assert muted.returncode == 0
    assert orjson.loads(muted.stdout)["injected"]["symbols"] == ["BTCUSDT"]
    active = orjson.loads(listed.stdout)["active"]
    assert [f["fault"] for f in active] == ["stall", "mute"]
    assert all(0 < f["remaining_s"] <= 30 for f in active)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "fault 429 needs --seconds" in refused.stderr  # refused before sending
    assert refused_mute.returncode == 2
    assert refused_mute.stderr.count("\n") == 1
    assert "fault mute needs --seconds" in refused_mute.stderr
    assert cleared.returncode == 0
    assert [f["fault"] for f in orjson.loads(cleared.stdout)["cleared"]] == ["stall", "mute"]
    assert orjson.loads(cleared.stdout)["active"] == []
    assert dead.returncode == 1
    assert dead.stderr.startswith("ntplatform fault: cannot reach the replay exchange at http://127.0.0.1:")
    assert dead.stderr.count("\n") == 1
    log = processes[0].output()
    assert '"event":"fault_injected"' in log
    assert '"event":"fault_cleared","reason":"cleared"' in log

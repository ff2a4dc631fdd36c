"""The replay exchange as a client sees it: REST, WebSocket, book sync, loops, start-up.

Servers run in-process on a free port (or as a subprocess for signal handling) and
replay the shared recordings, or small recordings cut from them into ``tmp_path``.
The book checks keep their own reference book by Binance's documented sync rules and
use the recorded ``bookTicker`` messages as the oracle for its best bid and ask.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from ntplatform.logs import EventLog
from ntplatform.replay.server import ReplayExchange, add_arguments, build_exchange, run
from tests.conftest import ROOT as REPO
from tests.conftest import SHARED_DATA as SHARED
from tests.integration.replay_client import FollowResult, follow_book

HTTP_DIR = SHARED / "http"
SPOT_BTC = SHARED / "spot" / "btcusdt_20240808.gz"
USDM_BTC = SHARED / "usdm" / "btcusdt_20240808.gz"

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running_exchange(
    paths: list[Path],
    *,
    speed: float = 1.0,
    aliases: dict[str, str] | None = None,
    log_stream: io.StringIO | None = None,
) -> AsyncIterator[tuple[ReplayExchange, str]]:
    """An exchange listening on a free loopback port; yields it and its base URL."""
    log = EventLog("replay-exchange", level="debug", stream=log_stream or io.StringIO())
    exchange = build_exchange(paths, speed=speed, http_dir=HTTP_DIR, aliases=aliases, log=log)
    port = await exchange.start("127.0.0.1", 0)
    try:
        yield exchange, f"http://127.0.0.1:{port}"
    finally:
        await exchange.stop()


def cut_recording(source: Path, target: Path, seconds: float) -> Path:
    """Copy ``source`` up to ``seconds`` after its snapshot line into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    snapshot_ns = None
    with gzip.open(source, "rb") as reader, gzip.open(target, "wb") as writer:
        for line in reader:
            receive_ns = int(line.partition(b" ")[0])
            if snapshot_ns is None and b'"lastUpdateId"' in line[:60]:
                snapshot_ns = receive_ns
            if snapshot_ns is not None and receive_ns > snapshot_ns + seconds * 1e9:
                break
            writer.write(line)
    return target


async def get_json(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET ``base + path``; return the status and the decoded JSON body."""
    async with aiohttp.ClientSession() as http, http.get(base + path, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def parse_cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_spot_exchange_info_lists_recorded_symbols_with_allow_trailing_stop():
    async def scenario() -> None:
        async with running_exchange([SHARED / "spot"]) as (_, base):
            status, info = await get_json(base, "/api/v3/exchangeInfo")
            _, filtered = await get_json(base, '/api/v3/exchangeInfo?symbols=["ETHUSDT"]')
            _, single = await get_json(base, "/api/v3/exchangeInfo?symbol=BTCUSDT")

        assert status == 200
        assert {"timezone", "serverTime", "rateLimits", "exchangeFilters"} <= set(info)
        assert [entry["symbol"] for entry in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        assert all(entry["allowTrailingStop"] is False for entry in info["symbols"])
        assert [entry["symbol"] for entry in filtered["symbols"]] == ["ETHUSDT"]
        assert [entry["symbol"] for entry in single["symbols"]] == ["BTCUSDT"]

    asyncio.run(scenario())


def test_unknown_symbol_answers_minus_1121():
    async def scenario() -> None:
        async with running_exchange([SPOT_BTC]) as (_, base):
            info = await get_json(base, "/api/v3/exchangeInfo?symbol=DOGEUSDT")
            depth = await get_json(base, "/api/v3/depth?symbol=DOGEUSDT")

        assert info == (400, {"code": -1121, "msg": "Invalid symbol."})
        assert depth == (400, {"code": -1121, "msg": "Invalid symbol."})

    asyncio.run(scenario())


def test_unknown_endpoint_answers_404_json():
    async def scenario() -> None:
        async with running_exchange([SPOT_BTC]) as (_, base):
            status, body = await get_json(base, "/api/v3/nothingHere")
            futures_status, _ = await get_json(base, "/fapi/v1/depth?symbol=BTCUSDT")

        assert status == 404
        assert isinstance(body["code"], int)
        assert "/api/v3/nothingHere" in body["msg"]
        assert futures_status == 404  # a spot exchange has no futures API

    asyncio.run(scenario())


def test_depth_limit_is_validated_like_binance():
    async def scenario() -> None:
        async with running_exchange([SPOT_BTC]) as (_, base):
            _, default = await get_json(base, "/api/v3/depth?symbol=BTCUSDT")
            _, five = await get_json(base, "/api/v3/depth?symbol=BTCUSDT&limit=5")
            illegal = await get_json(base, "/api/v3/depth?symbol=BTCUSDT&limit=ten")
            missing = await get_json(base, "/api/v3/depth")

        assert len(default["bids"]) == 100
        assert len(five["asks"]) == 5
        assert illegal[0] == 400
        assert illegal[1]["code"] == -1100
        assert missing[0] == 400
        assert missing[1]["code"] == -1102

    asyncio.run(scenario())


def test_spot_trade_fee_needs_api_key_and_answers_per_symbol():
    async def scenario() -> None:
        async with running_exchange([SHARED / "spot"]) as (_, base):
            path = "/sapi/v1/asset/tradeFee?timestamp=1&signature=abc"
            anonymous = await get_json(base, path)
            signed = await get_json(base, path, headers={"X-MBX-APIKEY": "any"})

        assert anonymous[0] == 401
        assert signed[0] == 200
        assert {fee["symbol"] for fee in signed[1]} == {"BTCUSDT", "ETHUSDT"}
        assert set(signed[1][0]) == {"symbol", "makerCommission", "takerCommission"}

    asyncio.run(scenario())


def test_futures_endpoints_answer_what_the_instrument_provider_needs():
    async def scenario() -> None:
        async with running_exchange([USDM_BTC]) as (_, base):
            key = {"X-MBX-APIKEY": "any"}
            signed = "timestamp=1&signature=abc"
            info = await get_json(base, "/fapi/v1/exchangeInfo")
            account = await get_json(base, f"/fapi/v2/account?recvWindow=5000&{signed}", key)
            risk = await get_json(base, f"/fapi/v3/positionRisk?{signed}", key)
            fee = await get_json(base, f"/fapi/v1/commissionRate?symbol=BTCUSDT&{signed}", key)
            depth = await get_json(base, "/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
            bad_limit = await get_json(base, "/fapi/v1/depth?symbol=BTCUSDT&limit=7")
            time_now = await get_json(base, "/fapi/v1/time")

        assert [entry["symbol"] for entry in info[1]["symbols"]] == ["BTCUSDT"]
        assert account[1]["feeTier"] == 0
        assert risk == (200, [])
        assert fee[1]["symbol"] == "BTCUSDT"
        assert {"lastUpdateId", "E", "T", "bids", "asks"} == set(depth[1])
        assert len(depth[1]["bids"]) == 1000
        assert bad_limit[0] == 400
        assert time_now[1]["serverTime"] > 0

    asyncio.run(scenario())


def test_alias_is_served_with_its_own_catalogue_entry_and_streams():
    async def scenario() -> None:
        async with running_exchange([SPOT_BTC], speed=20, aliases={"ADAUSDT": "BTCUSDT"}) as (
            _,
            base,
        ):
            _, info = await get_json(base, '/api/v3/exchangeInfo?symbols=["ADAUSDT"]')
            async with aiohttp.ClientSession() as http:
                url = base.replace("http", "ws") + "/ws/adausdt@trade"
                async with http.ws_connect(url) as ws:
                    trade = orjson.loads((await ws.receive(timeout=5)).data)

        entry = info["symbols"][0]
        assert (entry["symbol"], entry["baseAsset"], entry["quoteAsset"]) == (
            "ADAUSDT",
            "ADA",
            "USDT",
        )
        assert trade["s"] == "ADAUSDT"  # raw stream: payload without envelope

    asyncio.run(scenario())


def test_websocket_subscription_requests_are_answered():
    async def scenario() -> list[dict[str, Any]]:
        async with running_exchange([SPOT_BTC], speed=20) as (_, base):
            url = base.replace("http", "ws") + "/stream?streams=btcusdt@depth@100ms"
            async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
                await ws.send_str('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
                await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":2}')
                await ws.send_str('{"method":"SUBSCRIBE","params":"btcusdt@trade","id":3}')
                answers, streams = [], set()
                while len(answers) < 3 or "btcusdt@trade" not in streams:
                    message = orjson.loads((await ws.receive(timeout=5)).data)
                    if "stream" in message:
                        streams.add(message["stream"])
                    else:
                        answers.append(message)
                return answers

    answers = asyncio.run(scenario())

    assert answers[0] == {"result": None, "id": 1}
    assert answers[1] == {"result": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 2}
    assert answers[2]["id"] == 3
    assert answers[2]["error"]["code"] == 2


@pytest.mark.parametrize(("recording", "futures"), [(SPOT_BTC, False), (USDM_BTC, True)])
def test_synced_book_matches_every_book_ticker_at_high_speed(recording, futures):
    async def scenario() -> FollowResult:
        async with running_exchange([recording], speed=20) as (_, base):
            return await follow_book(base, "BTCUSDT", futures, seconds=4)

    result = asyncio.run(scenario())

    assert result.mismatches == []
    assert result.gaps == 0
    assert result.syncs == 1
    assert result.matches >= 30


@pytest.mark.parametrize(("recording", "futures"), [(SPOT_BTC, False), (USDM_BTC, True)])
def test_epoch_loop_shows_a_gap_and_a_fresh_snapshot_resyncs(tmp_path, recording, futures):
    short = cut_recording(recording, tmp_path / "binance" / "cut" / "btcusdt.gz", seconds=10)

    log_stream = io.StringIO()

    async def scenario() -> FollowResult:
        async with running_exchange([short], speed=10, log_stream=log_stream) as (_, base):
            return await follow_book(base, "BTCUSDT", futures, seconds=3.5)

    result = asyncio.run(scenario())

    assert result.gaps >= 2
    assert result.syncs >= 3
    assert result.mismatches == []
    assert result.matches_after_resync >= 1
    assert result.snapshot_ids == sorted(result.snapshot_ids)
    assert result.depth_event_times == sorted(result.depth_event_times)
    events = [orjson.loads(line) for line in log_stream.getvalue().splitlines()]
    epochs = [event for event in events if event["event"] == "replay_epoch_started"]
    assert [event["epoch"] for event in epochs][:3] == [0, 1, 2]


def _corrupt_bad_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "spot" / "bad.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not gzip\n")
    return path


def _corrupt_json_line_5(tmp_path: Path) -> Path:
    path = tmp_path / "spot" / "btcusdt.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(SPOT_BTC, "rb") as reader:
        lines = [next(reader) for _ in range(12)]
    lines[4] = lines[4][:40] + b"\n"
    with gzip.open(path, "wb") as writer:
        writer.writelines(lines)
    return path


def _corrupt_no_snapshot(tmp_path: Path) -> Path:
    path = tmp_path / "spot" / "btcusdt.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(SPOT_BTC, "rb") as reader:
        lines = [next(reader) for _ in range(20)]
    with gzip.open(path, "wb") as writer:
        writer.writelines(line for line in lines if b"lastUpdateId" not in line)
    return path


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (_corrupt_bad_gzip, ":1: unreadable gzip"),
        (_corrupt_json_line_5, ":5: bad JSON"),
        (_corrupt_no_snapshot, ": no depth snapshot"),
    ],
)
def test_run_corrupt_recording_prints_one_line_and_exits_2(tmp_path, capsys, make, where):
    path = make(tmp_path)

    code = run(parse_cli(["--path", str(path), "--http-dir", str(HTTP_DIR), "--port", "0"]))

    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1
    assert f"{path}{where}" in captured.err
    assert captured.out == ""


def test_server_process_corrupt_recording_exits_2_without_traceback(tmp_path):
    path = _corrupt_json_line_5(tmp_path)

    finished = subprocess.run(
        [sys.executable, "-m", "ntplatform.replay.server", "--path", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )

    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        f"replay-exchange: bad recording {path}:5: " + finished.stderr.split(":5: ", 1)[1].strip()
    ]
    assert "Traceback" not in finished.stderr


def test_server_process_stops_cleanly_on_sigterm(tmp_path):
    short = cut_recording(SPOT_BTC, tmp_path / "binance" / "spot" / "btcusdt.gz", seconds=3)
    command = [sys.executable, "-m", "ntplatform.replay.server", "--path", str(short)]
    command += ["--http-dir", str(HTTP_DIR), "--port", "0", "--speed", "5"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=os.environ.copy()
    )
    try:
        assert process.stdout is not None
        started = None
        for raw in process.stdout:
            event = orjson.loads(raw)
            if event["event"] == "replay_started":
                started = event
                break
        assert started is not None
        status, body = asyncio.run(get_json(started["base_url_http"], "/api/v3/ping"))
        process.send_signal(signal.SIGTERM)
        remaining, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert (status, body) == (200, {})
    assert process.returncode == 0
    events = [orjson.loads(line)["event"] for line in remaining.splitlines()]
    assert events[-1] == "shutdown_complete"
    assert errors == b""

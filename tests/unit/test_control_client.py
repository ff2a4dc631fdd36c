"""``ntplatform control``: bad input is refused locally with one line and exit 2, nothing sent."""

from __future__ import annotations

import getpass
import json
import socket
import time

import pytest

from ntplatform import cli, control
from tests.conftest import RedisProcess

SECRET = "a test fleet's control secret"  # noqa: S105 - the test's own


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = cli.main(["control", *argv])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("bogus", "invalid configuration: REDIS_URL='bogus': a URL with scheme redis or rediss or unix"),
        (
            "http://127.0.0.1:6379",
            "invalid configuration: REDIS_URL='http://127.0.0.1:6379': a URL with scheme redis or rediss",
        ),
        (
            "redis://:pw@127.0.0.1:abc/0",
            "invalid configuration: REDIS_URL='redis://:***@127.0.0.1:abc/0': the port must be a number",
        ),
    ],
)
def test_control_with_a_malformed_redis_url_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    monkeypatch.setenv("NT_CONTROL_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", url)

    code, lines = _run(capsys, "rebalance")

    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"ntplatform control: {says}")
    assert "pw" not in lines[0]


@pytest.mark.integration
@pytest.mark.parametrize("symbol", ["btc;usdt", "B", "BTC USDT", "btc,usdt"])
def test_control_with_a_malformed_symbol_is_refused_before_anything_is_published(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisProcess,
    symbol: str,
) -> None:
    monkeypatch.setenv("NT_CONTROL_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    listener = redis_server.client().pubsub(ignore_subscribe_messages=True)
    listener.subscribe(control.CHANNEL)
    assert listener.get_message(timeout=1) is None  # the subscription is in place

    code, lines = _run(capsys, "resubscribe", "--symbol", symbol, "--timeout", "0.5")

    assert code == 2
    assert lines == [
        f"ntplatform control: --symbol {symbol!r}: symbol {symbol.strip().upper()!r} must be 2-20 "
        "letters or digits, e.g. BTCUSDT"
    ]
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        assert listener.get_message(timeout=0.1) is None
    listener.close()


@pytest.mark.integration
def test_control_with_a_well_formed_lowercase_symbol_publishes_it_upper_cased(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_server: RedisProcess
) -> None:
    monkeypatch.setenv("NT_CONTROL_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    listener = redis_server.client().pubsub(ignore_subscribe_messages=True)
    listener.subscribe(control.CHANNEL)
    assert listener.get_message(timeout=1) is None

    code, lines = _run(capsys, "resubscribe", "--symbol", " btcusdt ", "--timeout", "0.2")

    assert code == 1  # no producer listens here
    assert lines == ["ntplatform control: no node answered within 0.2 s"]
    message = listener.get_message(timeout=2)
    assert message is not None
    verdict = control.Verifier(SECRET).check(message["data"], int(time.time() * 1000))
    assert verdict.command is not None
    assert verdict.command.symbol == "BTCUSDT"
    assert verdict.command.issuer == f"cli:{getpass.getuser()}@{socket.gethostname()}"  # not "dagster"
    listener.close()


def test_control_without_a_secret_says_where_up_saved_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NT_CONTROL_SECRET", raising=False)
    code, lines = _run(capsys, "rebalance")
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("ntplatform control: NT_CONTROL_SECRET must be set")
    assert "NT_CONTROL_SECRET=$(cat .run/control_secret)" in lines[0]


def test_rebalance_with_a_symbol_is_refused_rather_than_ignored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NT_CONTROL_SECRET", SECRET)
    code, lines = _run(capsys, "rebalance", "--symbol", "BTCUSDT")
    assert code == 2
    assert lines == [
        "ntplatform control: rebalance takes no --symbol (it concerns every symbol); only resubscribe does"
    ]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("node", "says"),
    [
        ("ghost", "no live node named 'ghost' (heartbeating: producer-node-001, producer-node-002)"),
        (
            "producer-node-002",
            "producer-node-002 does not write BTCUSDT (producer-node-001 does): use --node "
            "producer-node-001, or leave --node out to ask every node",
        ),
    ],
    ids=["no-heartbeat", "not-the-writer"],
)
def test_resubscribe_to_a_node_that_cannot_take_it_is_refused_naming_who_can_and_sends_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisProcess,
    node: str,
    says: str,
) -> None:
    monkeypatch.setenv("NT_CONTROL_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    client = redis_server.client()
    for live in ("producer-node-002", "producer-node-001"):
        client.set(f"nt:node:{live}", json.dumps({"node_id": live}), px=60_000)
    client.set("report:writer:BTCUSDT", "producer-node-001", px=60_000)
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(control.CHANNEL)
    assert listener.get_message(timeout=1) is None

    code, lines = _run(capsys, "resubscribe", "--node", node, "--symbol", "btcusdt")

    assert code == 1
    assert lines == [f"ntplatform control: {says}"]
    assert listener.get_message(timeout=0.5) is None
    listener.close()

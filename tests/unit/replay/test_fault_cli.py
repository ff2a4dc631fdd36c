"""The `fault` command: actions mapped to requests, and its one-line errors."""

from __future__ import annotations

import argparse

import pytest

from ntplatform.replay import fault_cli
from ntplatform.replay.faults import DROP_CONNECTIONS, HTTP_429, MUTE, SEQUENCE_GAP, STALE_SNAPSHOT, STALL


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
        (
            ["stale-snapshot", "--seconds", "8", "--symbol", "BTCUSDT"],
            ("POST", {"fault": STALE_SNAPSHOT, "seconds": 8.0, "symbol": "BTCUSDT"}),
        ),
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
    assert captured.err.startswith("ntplatform fault: cannot reach the replay exchange at http://127.0.0.1:")
    assert captured.out == ""


def test_fault_cli_non_http_exchange_is_refused_with_exit_2(capsys):
    code = fault_cli.run(_cli(["--exchange", "file:///etc/passwd", "list"]))

    assert code == 2
    assert "--exchange must be an http:// or https:// URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["drop", "--seconds", "5"], "fault drop takes no options; got --seconds"),
        (["gap", "--seconds", "5", "--symbol", "BTCUSDT"], "fault gap takes --symbol; got --seconds"),
        (["429", "--symbol", "BTCUSDT"], "fault 429 takes --seconds; got --symbol"),
        (
            ["stale-snapshot", "--symbol", "BTCUSDT"],
            "fault stale-snapshot needs --seconds: a number above 0 and at most 3600",
        ),
        (["list", "--symbol", "BTCUSDT"], "fault list takes no options; got --symbol"),
        # JSON has no NaN: sent, it would arrive as null ("none given"); refused here instead.
        (["mute", "--seconds", "nan"], "fault mute --seconds nan: must be a number above 0 and at most 3600"),
        (["429", "--seconds", "-1"], "fault 429 --seconds -1: must be a number above 0 and at most 3600"),
        (
            ["stall", "--seconds", "inf"],
            "fault stall --seconds inf: must be a number above 0 and at most 3600",
        ),
    ],
)
def test_fault_cli_option_the_action_does_not_take_is_refused_before_sending(argv, message, capsys):
    from tests.conftest import free_port

    code = fault_cli.run(_cli(["--exchange", f"http://127.0.0.1:{free_port()}", *argv]))

    assert code == 2  # refused here: nothing listens on that port, so nothing was sent
    assert capsys.readouterr().err == f"ntplatform {message}\n"


def test_fault_cli_options_the_action_takes_pass():
    assert fault_cli.misuse(_cli(["stall", "--seconds", "3", "--symbol", "BTCUSDT"])) is None
    assert fault_cli.misuse(_cli(["drop"])) is None

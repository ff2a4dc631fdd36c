"""``ntplatform up``'s own checks: contradictory options, and node ids another process runs."""

from __future__ import annotations

import argparse

from ntplatform.probes import heartbeat_process_runs
from ntplatform.up_arguments import add_arguments, check_arguments


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_live_with_a_replay_path_is_refused_naming_both() -> None:
    problem = check_arguments(_parse("--live", "--replay-path", "recordings/spot"))

    assert problem == (
        "--live and --replay-path recordings/spot: choose one (live Binance, or a replay of recordings)"
    )


def test_live_alone_and_a_replay_path_alone_are_accepted() -> None:
    assert check_arguments(_parse("--live")) is None
    assert check_arguments(_parse("--replay-path", "recordings/spot")) is None


def test_heartbeat_of_a_process_of_this_host_counts_only_while_it_runs() -> None:
    running = {101}

    def runs(pid: int) -> bool:
        return pid in running

    assert heartbeat_process_runs({"host": "here", "pid": 101}, "here", runs)
    assert not heartbeat_process_runs({"host": "here", "pid": 202}, "here", runs)  # left by a killed up


def test_heartbeat_of_another_host_or_without_pid_counts_as_running() -> None:
    def never(pid: int) -> bool:
        raise AssertionError(f"pid {pid} of another host must not be checked here")

    assert heartbeat_process_runs({"host": "elsewhere", "pid": 202}, "here", never)
    assert heartbeat_process_runs({"host": "here", "pid": None}, "here", never)

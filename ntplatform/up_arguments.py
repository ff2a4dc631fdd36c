"""The command line of ``ntplatform up``: its options and their checks (no I/O)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path

from ntplatform import dagster_processes, supervisor_api
from ntplatform.errors import ConfigError
from ntplatform.settings import load_dagster_settings, load_settings

REPLAY_PORT = 8790


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=1, help="producer nodes to run (default 1)")
    parser.add_argument(
        "--replay-path",
        type=Path,
        default=None,
        help="recordings to replay (default NT_REPLAY_PATH or ../shared/data/binance/spot)",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1)")
    parser.add_argument("--live", action="store_true", help="use live Binance, not the replay")
    parser.add_argument(
        "--exchange-port", type=int, default=REPLAY_PORT, help=f"replay exchange port (default {REPLAY_PORT})"
    )
    parser.add_argument(
        "--metrics-base-port",
        type=int,
        default=9100,
        help="node i serves /metrics and /health on this + i (default 9100)",
    )
    parser.add_argument(
        "--dagster-port",
        type=int,
        default=dagster_processes.DEFAULT_PORT,
        help=f"Dagster webserver on 127.0.0.1 (default {dagster_processes.DEFAULT_PORT})",
    )
    parser.add_argument(
        "--no-dagster", action="store_true", help="do not start the Dagster webserver and daemon"
    )
    parser.add_argument(
        "--control-port",
        type=int,
        default=supervisor_api.DEFAULT_CONTROL_PORT,
        help=f"control API on 127.0.0.1 (default {supervisor_api.DEFAULT_CONTROL_PORT}; 0 disables)",
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    """One line naming a bad argument and what is allowed, or None."""
    if args.live and args.replay_path is not None:
        return (
            f"--live and --replay-path {args.replay_path}: choose one "
            "(live Binance, or a replay of recordings)"
        )
    if args.nodes < 1 or args.nodes > 99:
        return f"--nodes {args.nodes}: must be from 1 to 99"
    if not 1 <= args.exchange_port <= 65535:
        return f"--exchange-port {args.exchange_port}: must be from 1 to 65535"
    if not args.metrics_base_port >= 1 or args.metrics_base_port + args.nodes > 65535:
        return f"--metrics-base-port {args.metrics_base_port}: base + nodes must be from 2 to 65535"
    if not args.no_dagster and not 1 <= args.dagster_port <= 65535:
        return f"--dagster-port {args.dagster_port}: must be from 1 to 65535"
    if not 0 <= args.control_port <= 65535:
        return f"--control-port {args.control_port}: must be from 0 (off) to 65535"
    if not (math.isfinite(args.speed) and 0 < args.speed <= 1000):
        return f"--speed {args.speed}: must be a number above 0 and at most 1000"
    return None


def check_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The producers' (and Dagster's) settings as ``up`` would pass them: the first bad one, or None.

    Checked before anything starts, so a typo is one line instead of a Redis, an exchange and
    a crash-looping producer. What ``up`` sets itself (node ids, ports, the replay exchange's
    URLs) is filled in as ``up`` would.
    """
    env = {**environ, "NT_NODE_ID": "producer-node-001", "NT_METRICS_PORT": str(args.metrics_base_port + 1)}
    if not args.live:  # replaying: up points the producers at its own exchange
        env["NT_BINANCE_HTTP_URL"] = f"http://127.0.0.1:{args.exchange_port}"
        env["NT_BINANCE_WS_URL"] = f"ws://127.0.0.1:{args.exchange_port}"
    try:
        load_settings(env)
        if not args.no_dagster:
            load_dagster_settings(env)
    except ConfigError as error:
        return str(error)
    return None

"""The ``ntplatform`` command: producer, replay-exchange, fault, control, backfill and up."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors in one line that names the problem and where the allowed forms are."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="ntplatform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("producer", help="run one producer node (settings from the environment)")
    replay = commands.add_parser(
        "replay-exchange", help="serve Binance recordings as a Binance-compatible exchange"
    )
    from ntplatform.replay import server as replay_server

    replay_server.add_arguments(replay)
    fault = commands.add_parser("fault", help="make a running replay exchange inject a fault")
    from ntplatform.replay import fault_cli

    fault_cli.add_arguments(fault)
    backfill = commands.add_parser(
        "backfill", help="recompute reports from recordings with the backtest engine, to Parquet"
    )
    from producer import backfill as backfill_cli

    backfill_cli.add_arguments(backfill)
    command = commands.add_parser("control", help="send a signed command to the producers (nt:control)")
    from ntplatform import control_client

    control_client.add_arguments(command)
    up = commands.add_parser("up", help="start Redis, the replay exchange, producers and Dagster")
    from ntplatform import up_arguments

    up_arguments.add_arguments(up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "producer":
        from producer.node import main as producer_main

        return producer_main()
    if args.command == "replay-exchange":
        from ntplatform.replay import server as replay_server

        return replay_server.run(args)
    if args.command == "fault":
        from ntplatform.replay import fault_cli

        return fault_cli.run(args)
    if args.command == "backfill":
        from producer import backfill as backfill_cli

        return backfill_cli.run(args)
    if args.command == "control":
        from ntplatform import control_client

        return control_client.run(args)
    from ntplatform import supervisor

    return supervisor.run(args)


if __name__ == "__main__":
    sys.exit(main())

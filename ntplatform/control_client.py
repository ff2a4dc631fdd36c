"""Sending signed commands on ``nt:control`` and collecting the acks (the I/O edge of
``ntplatform.control``), and ``ntplatform control``, the operator's way to send one by hand.

``ntplatform control rebalance`` / ``ntplatform control resubscribe --symbol BTCUSDT
[--node producer-node-002]`` reads ``REDIS_URL`` and ``NT_CONTROL_SECRET`` from the
environment, prints each node's answer on one line and exits 0 when at least one node
accepted, 1 when none did (or none answered), 2 on bad input (a ``REDIS_URL`` that is not
``redis://``, ``rediss://`` or ``unix://``, a ``--symbol`` that breaks the ``SYMBOLS`` rule):
nothing is sent then.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time
from typing import Any

import orjson
import redis

from ntplatform import control, keys
from ntplatform.errors import ConfigError
from ntplatform.settings import MIN_SECRET_CHARS, parse_redis_url, parse_symbol, redact_url

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ControlError(Exception):
    """A command could not be sent (no secret, Redis unreachable)."""


def send(
    client: redis.Redis,
    secret: str,
    command: str,
    target: str,
    symbol: str | None = None,
    expected: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    issuer: str = "dagster",
) -> list[dict[str, Any]]:
    """Publish one signed command (issued at Redis's time); the acks received in time.

    Waits until ``expected`` nodes answered or ``timeout_s`` passed.
    """
    if not secret:
        raise ControlError("NT_CONTROL_SECRET is not set here: producers would refuse the command")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(control.ACK_CHANNEL)
        seconds, micros = client.time()
        message = control.make_command(
            secret, command, target, int(seconds) * 1000 + int(micros) // 1000, symbol, issuer=issuer
        )
        command_id = orjson.loads(message)["id"]
        client.publish(control.CHANNEL, message)
        acks: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(acks) < expected and time.monotonic() < deadline:
            reply = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            body = _decode(reply.get("data")) if reply else None
            if body is not None and body.get("id") == command_id:
                acks.append(body)
        return acks
    except redis.RedisError as error:
        raise ControlError(f"cannot send {command} on {control.CHANNEL}: {error}") from None
    finally:
        pubsub.close()


def live_nodes(client: redis.Redis) -> list[str]:
    """The node ids with a heartbeat key now."""
    prefix = keys.node_key("")
    return sorted(k.decode()[len(prefix) :] for k in client.scan_iter(match=keys.node_key("*"), count=1000))


def _writer(client: redis.Redis, symbol: str) -> str | None:
    """The node holding the symbol's writer lease, if any."""
    raw = client.get(keys.writer_key(symbol))
    return raw.decode() if isinstance(raw, bytes) else None


def _decode(raw: Any) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except (TypeError, orjson.JSONDecodeError):
        return None
    return body if isinstance(body, dict) else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=control.COMMANDS,
        help="rebalance: recompute ownership now; resubscribe: renew a symbol's market data (needs --symbol)",
    )
    parser.add_argument("--node", default=control.EVERY_NODE, help="target node id (default: every node)")
    parser.add_argument("--symbol", help="the symbol to resubscribe")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for acks")


def _input_problem(args: argparse.Namespace, secret: str) -> str | None:
    if len(secret) < MIN_SECRET_CHARS:
        return (
            f"NT_CONTROL_SECRET must be set to the fleet's secret (at least {MIN_SECRET_CHARS} characters; "
            "ntplatform up saves the one it generated: NT_CONTROL_SECRET=$(cat .run/control_secret))"
        )
    if args.action in control.NEEDS_SYMBOL and not args.symbol:
        return f"{args.action} needs --symbol (the symbol to resubscribe, e.g. BTCUSDT)"
    if args.action not in control.NEEDS_SYMBOL and args.symbol is not None:
        return f"{args.action} takes no --symbol (it concerns every symbol); only resubscribe does"
    if args.symbol is not None:
        try:
            parse_symbol("--symbol", args.symbol)
        except ConfigError as error:
            return f"--symbol {args.symbol!r}: {error.allowed}"
    if not 0 < args.timeout <= 60:
        return f"--timeout {args.timeout}: must be above 0 and at most 60 seconds"
    return None


def cli_issuer() -> str:
    """Who sends a command from the command line, as the producers log it: ``cli:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def _client(url: str) -> redis.Redis | str:
    """A client for ``url``, or what is wrong with it (one line naming REDIS_URL)."""
    try:
        parse_redis_url("REDIS_URL", url)
        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    except ConfigError as error:
        return str(error)
    except ValueError as error:  # what redis-py refuses beyond that
        return f"REDIS_URL={redact_url(url)}: not a valid Redis URL ({error})"


def run(args: argparse.Namespace) -> int:
    secret = os.environ.get("NT_CONTROL_SECRET", "").strip()
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    problem = _input_problem(args, secret)
    client = _client(url) if problem is None else problem
    if isinstance(client, str):
        print(f"ntplatform control: {client}", file=sys.stderr)
        return 2
    symbol = args.symbol.strip().upper() if args.symbol else None
    try:
        live = live_nodes(client)
        if args.node != control.EVERY_NODE and args.node not in live:
            print(
                f"ntplatform control: no live node named {args.node!r} (heartbeating: "
                f"{', '.join(live) or 'none'})",
                file=sys.stderr,
            )
            return 1
        writer = _writer(client, symbol) if symbol and args.node != control.EVERY_NODE else None
        if writer is not None and writer != args.node:
            print(
                f"ntplatform control: {args.node} does not write {symbol} ({writer} does): "
                f"use --node {writer}, or leave --node out to ask every node",
                file=sys.stderr,
            )
            return 1
        expected = len(live) if args.node == control.EVERY_NODE else 1
        acks = send(
            client, secret, args.action, args.node, symbol, max(expected, 1), args.timeout, cli_issuer()
        )
    except (ControlError, redis.RedisError) as error:
        print(f"ntplatform control: {error} (REDIS_URL={redact_url(url)})", file=sys.stderr)
        return 1
    for ack in acks:
        print(orjson.dumps(ack).decode())
    if not acks:
        print(f"ntplatform control: no node answered within {args.timeout:g} s", file=sys.stderr)
    return 0 if any(a.get("outcome") == "accepted" for a in acks) else 1

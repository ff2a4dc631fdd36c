"""``ntplatform fault``: tell a running replay exchange to break, so alerts can be provoked.

``ntplatform fault [--exchange URL] ACTION [--seconds N] [--symbol S]``, ACTION one of
``drop stall mute 429 gap stale-snapshot clear list``,
drives the exchange's ``/_replay/faults`` endpoint (see :mod:`ntplatform.replay.faults`)
and prints the exchange's JSON answer on one line. Exit codes: 0 done, 1 the exchange
cannot be reached, 2 the exchange refused the request (the reason is printed).
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.error
import urllib.request
from typing import Any

import orjson

from ntplatform.replay.faults import (
    DROP_CONNECTIONS,
    HTTP_429,
    MAX_SECONDS,
    MUTE,
    PER_SYMBOL,
    SEQUENCE_GAP,
    STALE_SNAPSHOT,
    STALL,
    TIMED,
)
from ntplatform.replay.rest import FAULTS_PATH

DEFAULT_EXCHANGE = "http://127.0.0.1:8790"
ACTIONS = {
    "drop": DROP_CONNECTIONS,
    "stall": STALL,
    "mute": MUTE,
    "429": HTTP_429,
    "gap": SEQUENCE_GAP,
    "stale-snapshot": STALE_SNAPSHOT,
}
REQUEST_TIMEOUT_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fault`` options to ``parser``."""
    parser.add_argument(
        "--exchange",
        default=DEFAULT_EXCHANGE,
        metavar="URL",
        help=f"base URL of the replay exchange (default: {DEFAULT_EXCHANGE})",
    )
    parser.add_argument(
        "action",
        choices=[*ACTIONS, "clear", "list"],
        help="drop: close every WebSocket; stall: withhold stream messages for --seconds; "
        "mute: send nothing on the stream subscriptions open now, for --seconds or until "
        "the client unsubscribes and subscribes again; 429: answer REST with HTTP 429 for "
        "--seconds; gap: skip one diff-depth event; stale-snapshot: for --seconds, answer REST "
        "depth with the first answer given during the fault (the first rebuild gets a current one); "
        "clear: end every fault; list: show the active faults",
    )
    parser.add_argument("--seconds", type=float, help="duration of stall, mute, 429 and stale-snapshot")
    parser.add_argument(
        "--symbol", help="the symbol for stall, mute, gap and stale-snapshot (default: every symbol)"
    )


def misuse(args: argparse.Namespace) -> str | None:
    """An option the action does not take, or a --seconds out of range, in one line, or None."""
    kind = ACTIONS.get(args.action)
    takes = {"--seconds"} if kind in TIMED else set()
    takes |= {"--symbol"} if kind in PER_SYMBOL else set()
    given = {"--seconds"} if args.seconds is not None else set()
    given |= {"--symbol"} if args.symbol is not None else set()
    extra = sorted(given - takes)
    if extra:
        allowed = " and ".join(sorted(takes)) or "no options"
        return f"fault {args.action} takes {allowed}; got {', '.join(extra)}"
    seconds, in_range = args.seconds, f"a number above 0 and at most {MAX_SECONDS:g}"
    if kind in TIMED and seconds is None:
        return f"fault {args.action} needs --seconds: {in_range}"
    if seconds is not None and not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        return f"fault {args.action} --seconds {seconds:g}: must be {in_range}"
    return None


def request_of(args: argparse.Namespace) -> tuple[str, dict[str, Any] | None]:
    """The HTTP method and JSON body that carry out ``args``."""
    if args.action == "list":
        return "GET", None
    if args.action == "clear":
        return "DELETE", None
    body: dict[str, Any] = {"fault": ACTIONS[args.action]}
    if args.seconds is not None:
        body["seconds"] = args.seconds
    if args.symbol is not None:
        body["symbol"] = args.symbol
    return "POST", body


def run(args: argparse.Namespace) -> int:
    """Send the request; print the answer (stdout) or one line saying what went wrong (stderr)."""
    if not args.exchange.startswith(("http://", "https://")):
        sys.stderr.write(
            f"ntplatform fault: --exchange must be an http:// or https:// URL; got {args.exchange!r}\n"
        )
        return 2
    problem = misuse(args)
    if problem:
        sys.stderr.write(f"ntplatform {problem}\n")
        return 2
    method, body = request_of(args)
    url = args.exchange.rstrip("/") + FAULTS_PATH
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked http(s)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310 - same
            answer = response.read()
    except urllib.error.HTTPError as exc:
        sys.stderr.write(f"ntplatform fault: {args.exchange} refused {args.action}: {_reason(exc)}\n")
        return 2
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        sys.stderr.write(f"ntplatform fault: cannot reach the replay exchange at {args.exchange}: {reason}\n")
        return 1
    sys.stdout.write(answer.decode(errors="replace").strip() + "\n")
    return 0


def _reason(error: urllib.error.HTTPError) -> str:
    """The exchange's one-line reason for refusing a request."""
    raw = error.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        return str(body.get("error") or body.get("msg") or body)
    return f"HTTP {error.code} {raw[:200].decode(errors='replace').strip()}"

"""Authenticated commands to producers over Redis Pub/Sub (``nt:control``). Pure: no I/O.

Anyone who can reach Redis can publish on a channel, so a command only counts when it
carries an HMAC-SHA256 of its body made with the fleet's shared secret
(``NT_CONTROL_SECRET``), was issued recently (``issued_ms`` within ``MAX_AGE_MS`` of the
receiver's clock, either way) and has not been seen before (its ``id``), so a recorded
command cannot be replayed later. A node without a secret refuses every command.

A command is a JSON object::

    {"id": "…", "command": "resubscribe", "target": "producer-node-002",
     "symbol": "BTCUSDT", "issued_ms": 1764790000000, "issuer": "dagster", "sig": "…hex…"}

``target`` is a node id or ``*`` (every node). Commands:

- ``rebalance``: recompute symbol ownership now instead of at the next interval;
- ``resubscribe`` (needs ``symbol``): drop the symbol's market-data subscriptions and
  subscribe again, so its book is rebuilt from a fresh snapshot.

Every node answers on ``nt:control:ack`` with ``{"id", "node_id", "outcome", "reason"}``
(``outcome`` is ``accepted`` or ``refused``), so the sender can tell whether anyone obeyed.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

CHANNEL = "nt:control"
ACK_CHANNEL = "nt:control:ack"
EVERY_NODE = "*"
REBALANCE = "rebalance"
RESUBSCRIBE = "resubscribe"
COMMANDS = (REBALANCE, RESUBSCRIBE)
NEEDS_SYMBOL = (RESUBSCRIBE,)
MAX_AGE_MS = 30_000
SIGNED_FIELDS = ("id", "command", "target", "symbol", "issued_ms", "issuer")

# Refusal reasons (the ``reason`` of ``control_command_refused`` and of the ack).
MALFORMED = "malformed"
NO_SECRET = "control_disabled"  # noqa: S105 - a reason, not a password
BAD_SIGNATURE = "bad_signature"
EXPIRED = "expired"
REPLAYED = "replayed"
UNKNOWN_COMMAND = "unknown_command"


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    command: str
    target: str
    symbol: str | None
    issued_ms: int
    issuer: str

    def for_node(self, node_id: str) -> bool:
        return self.target in (EVERY_NODE, node_id)

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "target": self.target,
            "symbol": self.symbol,
            "issued_ms": self.issued_ms,
            "issuer": self.issuer,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a node makes of one message: ``command`` when accepted, else ``reason``."""

    command: Command | None
    reason: str | None
    body: dict[str, Any]  # what could be decoded, for the log (never the signature)

    @property
    def accepted(self) -> bool:
        return self.command is not None


def _canonical(fields: dict[str, Any]) -> bytes:
    return orjson.dumps({k: fields.get(k) for k in SIGNED_FIELDS}, option=orjson.OPT_SORT_KEYS)


def signature(secret: str, fields: dict[str, Any]) -> str:
    return hmac.new(secret.encode(), _canonical(fields), hashlib.sha256).hexdigest()


def make_command(
    secret: str,
    command: str,
    target: str,
    issued_ms: int,
    symbol: str | None = None,
    issuer: str = "dagster",
    command_id: str | None = None,
) -> bytes:
    """A signed command, serialised for ``PUBLISH nt:control``."""
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {', '.join(COMMANDS)}; got {command!r}")
    if command in NEEDS_SYMBOL and not symbol:
        raise ValueError(f"{command} needs a symbol")
    fields = Command(
        id=command_id or uuid.uuid4().hex,
        command=command,
        target=target,
        symbol=symbol.upper() if symbol else None,
        issued_ms=issued_ms,
        issuer=issuer,
    ).fields()
    return orjson.dumps({**fields, "sig": signature(secret, fields)})


class Verifier:
    """Checks commands for one node: signature, age and replay (remembers recent ids)."""

    def __init__(self, secret: str | None, max_age_ms: int = MAX_AGE_MS, remembered: int = 10_000) -> None:
        self._secret = secret or None
        self._max_age_ms = max_age_ms
        self._remembered = remembered
        self._seen: OrderedDict[str, int] = OrderedDict()

    def check(self, raw: bytes | str, now_ms: int) -> Verdict:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Verdict(None, MALFORMED, {})
        if not isinstance(body, dict):
            return Verdict(None, MALFORMED, {})
        shown = {k: body.get(k) for k in SIGNED_FIELDS if k in body}
        if self._secret is None:
            return Verdict(None, NO_SECRET, shown)
        command = _parse(body)  # the shape first: a command missing fields is malformed, not forged
        if command is None:
            return Verdict(None, MALFORMED, shown)
        sig = body.get("sig")
        if not isinstance(sig, str) or not hmac.compare_digest(sig, signature(self._secret, body)):
            return Verdict(None, BAD_SIGNATURE, shown)
        if command.command not in COMMANDS or (command.command in NEEDS_SYMBOL and not command.symbol):
            return Verdict(None, UNKNOWN_COMMAND, shown)
        if abs(now_ms - command.issued_ms) > self._max_age_ms:
            return Verdict(None, EXPIRED, shown)
        if command.id in self._seen:
            return Verdict(None, REPLAYED, shown)
        self._remember(command.id, now_ms)
        return Verdict(command, None, shown)

    def _remember(self, command_id: str, now_ms: int) -> None:
        self._seen[command_id] = now_ms
        # Ids older than twice the accepted age can no longer pass the age check.
        while self._seen and (
            len(self._seen) > self._remembered
            or next(iter(self._seen.values())) < now_ms - 2 * self._max_age_ms
        ):
            self._seen.popitem(last=False)


def _parse(body: dict[str, Any]) -> Command | None:
    symbol = body.get("symbol")
    issued = body.get("issued_ms")
    texts = (body.get("id"), body.get("command"), body.get("target"), body.get("issuer"))
    if not all(isinstance(t, str) and t for t in texts) or not isinstance(issued, int):
        return None
    if symbol is not None and not isinstance(symbol, str):
        return None
    return Command(
        id=body["id"],
        command=body["command"],
        target=body["target"],
        symbol=symbol,
        issued_ms=issued,
        issuer=body["issuer"],
    )


def ack(command_id: Any, node_id: str, reason: str | None) -> bytes:
    """The answer a node publishes on ``nt:control:ack``."""
    outcome = "accepted" if reason is None else "refused"
    return orjson.dumps({"id": command_id, "node_id": node_id, "outcome": outcome, "reason": reason})

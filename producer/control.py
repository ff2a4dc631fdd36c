"""This node's end of the control channel ``nt:control`` (runs on the publisher thread).

``ntplatform.control`` decides whether a message is a genuine, fresh command; this class
logs the verdict (``control_command_accepted`` / ``control_command_refused`` with its
``reason``), counts it in ``nt_control_commands_total{command, outcome}``, answers on
``nt:control:ack`` and carries the command out:

- ``rebalance``: the coordinator recomputes ownership at once;
- ``resubscribe``: the actor drops and renews the symbol's market-data subscriptions.

Commands addressed to another node are ignored without a word.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from ntplatform import control
from ntplatform.logs import EventLog
from producer.metrics import ProducerMetrics

NOT_FOLLOWED = "symbol_not_followed"


class ControlHandler:
    """Verifies, logs, acknowledges and dispatches control commands."""

    def __init__(
        self,
        client: redis.Redis,
        node_id: str,
        secret: str | None,
        metrics: ProducerMetrics,
        log: EventLog,
        wall_ms: Callable[[], int],
    ) -> None:
        self._client = client
        self._node_id = node_id
        self._verifier = control.Verifier(secret)
        self._metrics = metrics
        self._log = log
        self._wall_ms = wall_ms
        # Set by the actor: resubscribe a symbol; returns False when this node does not follow it.
        self.resubscribe: Callable[[str], bool] = lambda symbol: False

    def handle(self, raw: bytes) -> bool:
        """Act on one message; True when it asks for a rebalance now."""
        verdict = self._verifier.check(raw, self._wall_ms())
        command = verdict.command
        if command is None:
            self._refuse(verdict.body, str(verdict.reason))
            return False
        if not command.for_node(self._node_id):
            return False
        if command.command == control.RESUBSCRIBE and not self.resubscribe(str(command.symbol)):
            self._refuse(command.fields(), NOT_FOLLOWED)
            return False
        self._metrics.control_commands.labels(command.command, "accepted").inc()
        self._log.info("control_command_accepted", **_described(command.fields()))
        self._client.publish(control.ACK_CHANNEL, control.ack(command.id, self._node_id, None))
        return command.command == control.REBALANCE

    def _refuse(self, body: dict[str, object], reason: str) -> None:
        name = body.get("command")
        label = name if name in control.COMMANDS else "unknown"
        self._metrics.control_commands.labels(label, "refused").inc()
        self._log.warning(
            "control_command_refused",
            reason=reason,
            hint=_HINTS.get(reason, ""),
            **_described(body),
        )
        self._client.publish(control.ACK_CHANNEL, control.ack(body.get("id"), self._node_id, reason))


def _described(body: dict[str, object]) -> dict[str, object]:
    """The command's fields for the log (``id`` becomes ``command_id``)."""
    return {("command_id" if key == "id" else key): value for key, value in body.items()}


_HINTS = {
    control.NO_SECRET: "NT_CONTROL_SECRET is not set on this node: it accepts no commands",
    control.BAD_SIGNATURE: "not signed with this fleet's NT_CONTROL_SECRET: forged, or a wrong secret",
    control.EXPIRED: "issued_ms more than 30 s from this node's clock: a replayed message or clock skew",
    control.REPLAYED: "this command id was already carried out",
    control.MALFORMED: "not a JSON command object with id, command, target, issued_ms, issuer",
    control.UNKNOWN_COMMAND: f"commands: {', '.join(control.COMMANDS)} (resubscribe needs a symbol)",
    NOT_FOLLOWED: "this node does not follow the symbol's market data: send it to the symbol's owner",
}

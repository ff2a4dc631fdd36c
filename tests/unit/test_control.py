"""The control channel's authentication: signature, age, replay, shape (ntplatform.control)."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from ntplatform import control

SECRET = "correct horse battery staple"  # noqa: S105 - the test's own
NOW = 1_764_790_000_000


def _signed(**overrides: object) -> bytes:
    return control.make_command(
        SECRET,
        overrides.pop("command", control.RESUBSCRIBE),  # type: ignore[arg-type]
        overrides.pop("target", "producer-node-002"),  # type: ignore[arg-type]
        overrides.pop("issued_ms", NOW),  # type: ignore[arg-type]
        symbol=overrides.pop("symbol", "btcusdt"),  # type: ignore[arg-type]
        command_id=overrides.pop("command_id", "cmd-1"),  # type: ignore[arg-type]
    )


def test_a_signed_fresh_command_is_accepted_with_its_fields():
    verdict = control.Verifier(SECRET).check(_signed(), NOW + 1_000)
    assert verdict.accepted
    assert verdict.reason is None
    command = verdict.command
    assert command is not None
    assert (command.id, command.command, command.target, command.symbol) == (
        "cmd-1",
        "resubscribe",
        "producer-node-002",
        "BTCUSDT",
    )
    assert command.for_node("producer-node-002")
    assert not command.for_node("producer-node-001")


def test_the_signature_is_hmac_sha256_of_the_sorted_signed_fields():
    body = orjson.loads(_signed())
    # Worked independently: the same canonical form built by hand, hashed with hmac directly.
    canonical = (
        '{"command":"resubscribe","id":"cmd-1","issued_ms":%d,"issuer":"dagster",'
        '"symbol":"BTCUSDT","target":"producer-node-002"}'
    ).replace("%d", str(NOW))
    expected = hmac.new(SECRET.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    assert body["sig"] == expected


def test_a_wrong_secret_is_refused_as_bad_signature():
    forged = control.make_command("not the fleet secret!!", control.REBALANCE, "*", NOW)
    assert control.Verifier(SECRET).check(forged, NOW).reason == control.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [("target", "*"), ("symbol", "ETHUSDT"), ("command", "rebalance"), ("issued_ms", NOW + 1)],
)
def test_changing_any_signed_field_breaks_the_signature(field, value):
    body = orjson.loads(_signed())
    body[field] = value
    assert control.Verifier(SECRET).check(orjson.dumps(body), NOW).reason == control.BAD_SIGNATURE


def test_a_missing_signature_is_refused():
    body = orjson.loads(_signed())
    del body["sig"]
    assert control.Verifier(SECRET).check(orjson.dumps(body), NOW).reason == control.BAD_SIGNATURE


@pytest.mark.parametrize("missing", ["id", "issued_ms", "issuer"])
def test_a_command_missing_a_field_is_malformed_not_forged(missing):
    body = orjson.loads(_signed())
    del body[missing]
    assert control.Verifier(SECRET).check(orjson.dumps(body), NOW).reason == control.MALFORMED


def test_a_bare_command_name_is_malformed():
    assert control.Verifier(SECRET).check(b'{"command":"resubscribe"}', NOW).reason == control.MALFORMED


def test_a_node_without_a_secret_refuses_even_a_well_formed_command():
    assert control.Verifier(None).check(_signed(), NOW).reason == control.NO_SECRET
    assert control.Verifier("").check(_signed(), NOW).reason == control.NO_SECRET


def test_old_or_future_commands_are_refused_as_expired():
    verifier = control.Verifier(SECRET, max_age_ms=30_000)
    assert verifier.check(_signed(command_id="a"), NOW + 30_000).accepted
    assert verifier.check(_signed(command_id="b"), NOW + 30_001).reason == control.EXPIRED
    assert verifier.check(_signed(command_id="c"), NOW - 30_001).reason == control.EXPIRED


def test_the_same_command_twice_is_refused_as_replayed():
    verifier = control.Verifier(SECRET)
    message = _signed()
    assert verifier.check(message, NOW).accepted
    assert verifier.check(message, NOW + 5).reason == control.REPLAYED
    assert verifier.check(_signed(command_id="cmd-2"), NOW + 5).accepted


def test_ids_are_forgotten_only_once_they_could_no_longer_pass_the_age_check():
    verifier = control.Verifier(SECRET, max_age_ms=1_000)
    first = _signed(command_id="old")
    assert verifier.check(first, NOW).accepted
    # A later command prunes ids older than 2 x max age; "old" is then expired anyway.
    assert verifier.check(_signed(command_id="new", issued_ms=NOW + 2_500), NOW + 2_500).accepted
    assert verifier.check(first, NOW + 2_500).reason == control.EXPIRED


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b""])
def test_garbage_is_refused_as_malformed(raw):
    assert control.Verifier(SECRET).check(raw, NOW).reason == control.MALFORMED


def test_a_signed_command_with_wrong_types_is_malformed():
    fields = {
        "id": "x",
        "command": "rebalance",
        "target": "*",
        "symbol": None,
        "issued_ms": "soon",
        "issuer": "me",
    }
    message = orjson.dumps({**fields, "sig": control.signature(SECRET, fields)})
    assert control.Verifier(SECRET).check(message, NOW).reason == control.MALFORMED


def test_a_signed_unknown_command_or_resubscribe_without_symbol_is_refused():
    for name, symbol in (("shutdown", None), ("resubscribe", None)):
        fields = {
            "id": name,
            "command": name,
            "target": "*",
            "symbol": symbol,
            "issued_ms": NOW,
            "issuer": "x",
        }
        message = orjson.dumps({**fields, "sig": control.signature(SECRET, fields)})
        assert control.Verifier(SECRET).check(message, NOW).reason == control.UNKNOWN_COMMAND


def test_make_command_rejects_what_no_node_would_accept():
    with pytest.raises(ValueError, match="one of rebalance, resubscribe"):
        control.make_command(SECRET, "restart", "*", NOW)
    with pytest.raises(ValueError, match="needs a symbol"):
        control.make_command(SECRET, control.RESUBSCRIBE, "*", NOW)


def test_refusals_show_the_claimed_fields_but_never_the_signature():
    forged = control.make_command("another secret value", control.REBALANCE, "*", NOW, command_id="f")
    verdict = control.Verifier(SECRET).check(forged, NOW)
    assert verdict.body["id"] == "f"
    assert verdict.body["command"] == "rebalance"
    assert "sig" not in verdict.body


def test_the_ack_says_accepted_or_refused_with_the_reason():
    assert orjson.loads(control.ack("c", "n1", None)) == {
        "id": "c",
        "node_id": "n1",
        "outcome": "accepted",
        "reason": None,
    }
    assert orjson.loads(control.ack("c", "n1", control.EXPIRED))["outcome"] == "refused"

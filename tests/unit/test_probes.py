"""Small helpers of `ntplatform up`: port probes before it starts a server, the control secret it saves."""

from __future__ import annotations

import socket

from ntplatform.probes import port_free


def test_port_in_time_wait_after_a_stop_is_free_but_a_listening_one_is_not() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    assert not port_free(port)  # a server listens there

    # The server closes first, as a stopped webserver does: its side waits in TIME_WAIT.
    accepted.close()
    listener.close()
    client.close()
    assert port_free(port)  # so `ntplatform up` can start again at once


def test_generated_control_secret_is_saved_for_its_owner_only(tmp_path) -> None:
    import stat

    from ntplatform.dagster_processes import ensure_control_secret

    stale = tmp_path / "run" / "control_secret"
    stale.parent.mkdir()
    stale.write_text("last run's secret, world-readable\n")
    stale.chmod(0o644)  # others could have read it: not reused

    env: dict[str, str] = {}
    assert ensure_control_secret(env, tmp_path / "run") == "generated"
    assert env["NT_CONTROL_SECRET"] != "last run's secret, world-readable"  # noqa: S105 - the test's own
    assert stale.read_text() == env["NT_CONTROL_SECRET"] + "\n"
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600


def test_saved_control_secret_is_reused_and_a_configured_one_wins(tmp_path) -> None:
    from ntplatform.dagster_processes import ensure_control_secret

    first: dict[str, str] = {}
    assert ensure_control_secret(first, tmp_path) == "generated"
    second: dict[str, str] = {}
    assert ensure_control_secret(second, tmp_path) == "reused"  # another up from this folder
    assert second["NT_CONTROL_SECRET"] == first["NT_CONTROL_SECRET"]

    configured = {"NT_CONTROL_SECRET": "the operator's own secret"}
    assert ensure_control_secret(configured, tmp_path) == "configured"
    assert configured["NT_CONTROL_SECRET"] == "the operator's own secret"  # noqa: S105 - the test's own
    assert (tmp_path / "control_secret").read_text() == first["NT_CONTROL_SECRET"] + "\n"  # untouched

"""The ``ntplatform`` command line: a usage error is one line, naming what was wrong."""

from __future__ import annotations

import pytest

from ntplatform import cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "ntplatform: the following arguments are required: COMMAND (see ntplatform --help)"),
        (["fault", "boom"], "ntplatform fault: argument action: invalid choice: 'boom' (choose from"),
        (
            ["fault", "--seconds", "abc", "stall"],
            "ntplatform fault: argument --seconds: invalid float value: 'abc' (see ntplatform fault --help)",
        ),
        (["up", "--nodes", "x"], "ntplatform up: argument --nodes: invalid int value: 'x'"),
    ],
)
def test_usage_error_is_one_line_and_exits_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1
    assert err.startswith(message)

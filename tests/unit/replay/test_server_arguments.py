import argparse

import pytest

from ntplatform.replay import server


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    server.add_arguments(parser)
    return server.run(parser.parse_args(argv))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "99999"], "--port=99999: a port from 0 (any free one) to 65535"),
        (["--port", "-5"], "--port=-5"),
        (["--speed", "inf"], "--speed=inf: a number above 0 and at most 1000"),
        (["--speed", "1e300"], "at most 1000"),
        (["--speed", "0"], "a number above 0"),
    ],
)
def test_run_bad_argument_prints_one_line_and_exits_2(argv, expected, capsys):
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert len(err.strip().splitlines()) == 1

import pytest

from ntplatform.cycles import CycleDecision, decide

MS = 1_000_000


def test_decide_first_run_always_runs():
    assert decide(None, 5 * MS, 250) == (CycleDecision.RUN, 0)


@pytest.mark.parametrize(
    ("since_ms", "expected", "lag_ms"),
    [
        (0, CycleDecision.SKIP, 0),  # a queued duplicate right behind the last run
        (999, CycleDecision.SKIP, 0),  # under half of a 2000 ms period
        (1000, CycleDecision.RUN, 0),
        (2000, CycleDecision.RUN, 0),  # on time
        (3000, CycleDecision.RUN, 1000),  # one and a half periods: still not reported
        (3001, CycleDecision.RUN_LAGGING, 1001),
        (16_000, CycleDecision.RUN_LAGGING, 14_000),  # the process was frozen for 14 s
    ],
)
def test_decide_by_time_since_last_run_against_a_2000_ms_period(since_ms, expected, lag_ms):
    assert decide(last_run_ns=10_000 * MS, now_ns=(10_000 + since_ms) * MS, period_ms=2000) == (
        expected,
        lag_ms,
    )


def test_decide_after_a_freeze_runs_every_period_again():
    # Timer events keep coming every 2 s, all 14 s behind their due time: that is not lag.
    last = 0
    decisions = []
    for tick in range(1, 6):
        now = (16_000 + tick * 2000) * MS
        decision, _ = decide(last, now, 2000)
        decisions.append(decision)
        if decision is not CycleDecision.SKIP:
            last = now
    assert decisions[1:] == [CycleDecision.RUN] * 4

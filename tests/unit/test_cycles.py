import pytest

from ntplatform.cycles import CycleDecision, decide

MS = 1_000_000


@pytest.mark.parametrize(
    ("lag_ms", "expected"),
    [
        (0, CycleDecision.RUN),
        (1000, CycleDecision.RUN),  # exactly half of a 2000 ms period: still on time
        (1001, CycleDecision.RUN_LAGGING),
        (2000, CycleDecision.RUN_LAGGING),
        (2001, CycleDecision.SKIP),  # a newer event is already queued behind this one
        (60_000, CycleDecision.SKIP),
    ],
)
def test_decide_by_lag_against_a_2000_ms_period(lag_ms, expected):
    decision, lag = decide(due_ns=10_000 * MS, now_ns=(10_000 + lag_ms) * MS, period_ms=2000)
    assert decision is expected
    assert lag == lag_ms


def test_decide_event_seen_before_it_was_due_counts_as_no_lag():
    assert decide(due_ns=10 * MS, now_ns=5 * MS, period_ms=250) == (CycleDecision.RUN, 0)

"""Segment history: memberships open and close as the data moves on, and re-runs
with the same as_of add nothing."""

from __future__ import annotations

import pytest

from tests.warehouse import handbuilt
from tests.warehouse.dbt_warehouse import load_handbuilt

D1, D2 = handbuilt.ANCHOR, handbuilt.LATER

HISTORY = (
    "select customer_id, segment, entered_at, exited_at "
    "from analytics.customer_segment_history order by all"
)


@pytest.fixture(scope="module")
def history(handbuilt_warehouse, tmp_path_factory):
    """From the store built at D1: re-run the history at D1, re-sync the data to D2,
    build at D2 and re-run the history at D2."""
    wh = handbuilt_warehouse.copy(tmp_path_factory, "history")
    at_d1 = wh.rows(HISTORY)
    rerun = wh.dbt("run", "--select", "customer_segment_history", as_of=D1)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    at_d1_again = wh.rows(HISTORY)

    load_handbuilt(wh, D2)
    wh.build(D2)
    at_d2 = wh.rows(HISTORY)
    rerun = wh.dbt("run", "--select", "customer_segment_history", as_of=D2)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    at_d2_again = wh.rows(HISTORY)
    return wh, at_d1, at_d1_again, at_d2, at_d2_again


def stays(rows):
    return {(r["customer_id"].removeprefix("HB-"), r["segment"]): (r["entered_at"], r["exited_at"])
            for r in rows}


def test_first_run_opens_a_row_per_membership(history):
    _, at_d1, *_ = history
    expected = {(c, s) for c, segs in handbuilt.SEGMENTS_AT_ANCHOR.items() for s in segs}
    assert set(stays(at_d1)) == expected
    assert all(r["entered_at"] == D1 and r["exited_at"] is None for r in at_d1)


def test_rerunning_the_same_day_adds_nothing(history):
    _, at_d1, at_d1_again, at_d2, at_d2_again = history
    assert at_d1_again == at_d1
    assert at_d2_again == at_d2


def test_segments_form_and_dissolve(history):
    wh, _, _, at_d2, _ = history
    assert wh.segments() == handbuilt.SEGMENTS_LATER
    s = stays(at_d2)
    # stopped skipping: left cadence_mismatch; then added a grinder: joined expansion
    assert s[("CADENCE", "cadence_mismatch")] == (D1, D2)
    assert s[("CADENCE", "expansion")] == (D2, None)
    # the add-on aged out, the newcomer settled in, the lapsed left the windows
    assert s[("EXPAND", "expansion")] == (D1, D2)
    assert s[("NEW", "onboarding")] == (D1, D2)
    assert s[("WINBACK", "win_back")] == (D1, D2)
    assert s[("FADING", "at_risk")] == (D1, D2)
    # still asleep: the row stays open from D1
    assert s[("DORMANT", "dormant")] == (D1, None)
    assert len(at_d2) == len(s)  # one row per stay

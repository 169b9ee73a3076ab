"""Segment history replayed at an earlier as_of, and rerun at the same as_of after the data
changed: the history is what it was after that day's run (nothing duplicated, no exit lost),
and running on from there gives the history of the original runs again."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from tests.warehouse import handbuilt
from tests.warehouse.dbt_warehouse import load_handbuilt

D1, D2 = handbuilt.ANCHOR, handbuilt.LATER
MID = D1 + timedelta(days=28)  # the newcomer and the add-on have aged out, the lapsed have not

HISTORY = (
    "select customer_id, segment, entered_at, exited_at "
    "from analytics.customer_segment_history order by all"
)
SEGMENTS = "select customer_id, segment from analytics.customer_segments order by all"


def run_history(wh, as_of):
    result = wh.dbt("run", "--select", "+customer_segment_history", as_of=as_of)
    assert result.returncode == 0, result.stdout[-4000:]


def overlapping_stays(rows):
    """Pairs of rows of one (customer, segment) whose stays overlap."""
    out = []
    by_key: dict = {}
    for r in rows:
        by_key.setdefault((r["customer_id"], r["segment"]), []).append(r)
    for stays in by_key.values():
        stays.sort(key=lambda r: r["entered_at"])
        for a, b in zip(stays, stays[1:]):
            if a["exited_at"] is None or a["exited_at"] > b["entered_at"]:
                out.append((a, b))
    return out


@pytest.fixture(scope="module")
def replayed(handbuilt_warehouse, tmp_path_factory):
    """History after runs at D1, MID and D2; then replayed at MID and run at D2 again."""
    wh = handbuilt_warehouse.copy(tmp_path_factory, "history-replay")
    load_handbuilt(wh, MID)
    run_history(wh, MID)
    at_mid, segments_at_mid = wh.rows(HISTORY), wh.rows(SEGMENTS)
    load_handbuilt(wh, D2)
    run_history(wh, D2)
    at_d2 = wh.rows(HISTORY)
    run_history(wh, MID)  # a past day again, with the data loaded since
    replay_mid, replay_segments = wh.rows(HISTORY), wh.rows(SEGMENTS)
    run_history(wh, D2)
    replay_d2 = wh.rows(HISTORY)
    return at_mid, segments_at_mid, at_d2, replay_mid, replay_segments, replay_d2


def test_a_replay_at_an_earlier_as_of_gives_that_days_history(replayed):
    at_mid, segments_at_mid, at_d2, replay_mid, replay_segments, _ = replayed
    assert at_mid != at_d2  # memberships changed between MID and D2
    assert replay_segments == segments_at_mid  # the segments are point in time
    assert not overlapping_stays(replay_mid)
    assert replay_mid == at_mid


def test_running_on_after_a_replay_gives_the_original_history(replayed):
    *_, at_d2, _, _, replay_d2 = replayed
    assert not overlapping_stays(replay_d2)
    assert replay_d2 == at_d2


def test_a_rerun_of_the_same_day_after_a_correction_rewrites_that_day(handbuilt_warehouse, tmp_path_factory):
    # MID's first run sees an add-on HB-ADVOCATE bought on MID and opens an expansion stay; the
    # order turns out to be a test order and is deleted: the rerun at MID leaves no stay behind.
    # And HB-WINBACK's cancellation is dated wrongly at first (MID - 100: out of the win-back
    # window, so the run at MID closes the stay opened at D1); corrected, the stay runs on.
    wh = handbuilt_warehouse.copy(tmp_path_factory, "history-correction")
    load_handbuilt(wh, MID)
    with duckdb.connect(str(wh.path)) as con:
        con.execute("insert into raw.orders values ('HB-TEST-O', 'HB-ADVOCATE', null, ?, 'fulfilled', 120.00, "
                    "null, null, null)", [handbuilt.at(MID)])
        con.execute("insert into raw.order_items values ('HB-TEST-O', 'HB-P-GRIND', 1, 120.00, true)")
        con.execute("update raw.subscriptions set cancelled_at = ? where customer_id = 'HB-WINBACK'",
                    [handbuilt.at(MID - timedelta(days=100))])
    run_history(wh, MID)
    first = {(r["customer_id"], r["segment"]): r for r in wh.rows(HISTORY)}
    assert (first[("HB-ADVOCATE", "expansion")]["entered_at"], first[("HB-ADVOCATE", "expansion")]["exited_at"]) \
        == (MID, None)
    assert first[("HB-WINBACK", "win_back")]["exited_at"] == MID
    load_handbuilt(wh, MID)  # the loader re-syncs: the test order is gone, the cancellation corrected
    run_history(wh, MID)
    rows = wh.rows(HISTORY)
    assert not overlapping_stays(rows)
    stays = {(r["customer_id"], r["segment"], r["entered_at"], r["exited_at"]) for r in rows}
    assert ("HB-WINBACK", "win_back", D1, None) in stays
    assert not {s for s in stays if s[:2] == ("HB-WINBACK", "win_back") and s != ("HB-WINBACK", "win_back", D1, None)}
    assert not {s for s in stays if s[:2] == ("HB-ADVOCATE", "expansion")}

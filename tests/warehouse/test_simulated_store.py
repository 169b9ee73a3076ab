"""The dbt project on a simulated store with the hand-built customers mixed in:
every dbt test passes and the hand-built customers still land in their segments."""

from __future__ import annotations

import duckdb
import pytest

from tests.warehouse import handbuilt
from tests.warehouse.dbt_warehouse import load_handbuilt, new_warehouse

simulator = pytest.importorskip("dagster_project.ingest.simulator")

D1 = handbuilt.ANCHOR


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    wh = new_warehouse(tmp_path_factory, "simulated")
    with duckdb.connect(str(wh.path)) as con:
        simulator.simulate(con, customers=500, months=12, seed=7, end_date=D1)
    load_handbuilt(wh, D1)
    wh.build(D1)  # fails with dbt's output if any model or test fails
    return wh


def test_handbuilt_customers_keep_their_segments_among_simulated_ones(simulated):
    assert simulated.segments("HB-") == handbuilt.SEGMENTS_AT_ANCHOR


def test_every_simulated_customer_has_context_and_tags(simulated):
    (counts,) = simulated.rows(
        "select (select count(*) from raw.customers) as raw_customers,"
        " (select count(*) from analytics.customer_context) as context_rows,"
        " (select count(*) from analytics.customer_tags) as tag_rows"
    )
    assert counts["raw_customers"] == 500 + len(handbuilt.SEGMENTS_AT_ANCHOR)
    assert counts["context_rows"] == counts["tag_rows"] == counts["raw_customers"]


def test_simulated_customers_form_segments_too(simulated):
    sizes = {
        r["segment"]: r["n"]
        for r in simulated.rows(
            "select segment, count(*) as n from analytics.customer_segments"
            " where customer_id not like 'HB-%' group by segment"
        )
    }
    # behaviour the simulator plants (mismatched cadences, cancellations, new sign-ups)
    for segment in ("cadence_mismatch", "win_back", "onboarding"):
        assert sizes.get(segment, 0) > 0, sizes
    # tone is learned from ticket text for everyone who wrote to us
    tones = {r["tone_preference"] for r in simulated.rows(
        "select distinct tone_preference from analytics.customer_context")}
    assert {"warm", "brief"} <= tones

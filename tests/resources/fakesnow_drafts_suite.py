"""Drafting on the Snowflake resource, against fakesnow, chunk by chunk.

Run by `test_snowflake.py` in the fakesnow virtualenv, like `fakesnow_assets_suite.py`.
The same small store (the raw contract tables, typed as the contract says, plus segments)
goes into fakesnow and into a DuckDB file; `message_drafts` runs on Snowflake in chunks
of 7 customers and on DuckDB in one batch, and must write the same drafts with the same
cache keys (a cache key covers the customer's whole context pack).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import fakesnow
import pandas as pd
import pytest
from fakesnow.cursor import FakeSnowflakeCursor

from dagster_project.decisioning.assets import DECISIONS_DDL, DECISIONS_TABLE
from dagster_project.ingest import contract
from dagster_project.messaging.assets import message_drafts
from dagster_project.resources.snowflake import SnowflakeSession, SnowflakeWarehouse
from dagster_project.resources.warehouse import DuckDBWarehouse, build_warehouse
from tests.messaging.store import INJECTION, PRODUCTS
from tests.raw_frames import contract_frame
from tests.resources.fakesnow_assets_suite import leftovers, materialize, read
from tests.resources.fakesnow_suite import ENV, _fetch_arrow_batches
from tests.spies import customers_per_read

CUSTOMERS = 30
CHUNK = 7
AS_OF = "2026-06-01"
RUN_DAY = datetime(2026, 6, 1)
CONFIG = {"as_of": AS_OF}
SEGMENTS = ("at_risk", "win_back", "cadence_mismatch", "onboarding", "dormant", "expansion")
# Every column a reviewer sees, and the cache key; not the moment the run wrote them.
DRAFT_COLUMNS = ("customer_id, playbook_id, batch_id, angle, generator, subject, preheader, body, cta, offer_id, "
                 "cited_fact_ids, verdicts, status, block_reason, cache_key, as_of")
BODIES = ("Hi there! The last bag was lovely but it came a few days late, could you check the courier? Thanks so "
          "much, we really enjoy it.", "Where is my order?", INJECTION, None)


def ids() -> list[str]:
    return [f"C{i:04d}" for i in range(CUSTOMERS)]


def store_tables() -> dict[tuple[str, str], pd.DataFrame]:
    """The raw tables drafting reads (nulls where the contract allows them) and the segments."""
    customers, subscriptions, orders, items, tickets, segments = [], [], [], [], [], []
    for k, c in enumerate(ids()):
        joined = RUN_DAY - timedelta(days=20 + 37 * k)
        customers.append((c, f"{c.lower()}@example.com", None if k % 10 == 9 else f"Name{k}", joined, "US", "UTC",
                          k % 9 != 4, "email"))
        product, plan = PRODUCTS[k % 3], ("single_bag", "double_bag", "family")[k % 3]
        cadence = (14, 21, 28, 42)[k % 4]
        status = ("active", "active", "paused", "cancelled")[k % 4] if k % 5 else None
        if status:
            sid = f"S{k:04d}"
            cancelled = RUN_DAY - timedelta(days=3 + k) if status == "cancelled" else None
            subscriptions.append((sid, c, product[0], plan, status, cadence, round(product[3] * 0.9, 2), joined,
                                  cancelled, "price" if cancelled else None,
                                  RUN_DAY + timedelta(days=k % 9) if status == "active" else None, k % 11 == 0))
            for n in range(min(k % 11, (RUN_DAY - joined).days // cadence)):  # cycles since they joined
                day = RUN_DAY - timedelta(days=1 + cadence * n, hours=k % 5)
                skipped = (k + n) % 4 == 1
                oid = f"O{k:04d}-{n}"
                orders.append((oid, c, sid, day, "skipped" if skipped else "fulfilled", 0 if skipped else 13.5 + n,
                               None, None if skipped else day + timedelta(days=1),
                               None if skipped or n == 0 else day + timedelta(days=3)))
                if not skipped:
                    items.append((oid, product[0], 1 + k % 3, product[3], False))
                    if n % 3 == 2:
                        items.append((oid, "P006", 1, 6.0, True))
        if k % 4 == 2:  # a one-time order, no subscription
            oid = f"O{k:04d}-x"
            orders.append((oid, c, None, RUN_DAY - timedelta(days=30 + k), "fulfilled", 18.0, "WELCOME", None, None))
            items.append((oid, "P007", 1, 18.0, True))
        for t in range(k % 3):
            opened = RUN_DAY - timedelta(days=2 + 40 * t + k)
            solved = t % 2 == 0
            tickets.append((f"T{k:04d}-{t}", c, opened, ("email", "chat")[t % 2], ("delivery_delay", "billing")[t % 2],
                            "solved" if solved else "open", opened + timedelta(hours=5) if solved else None,
                            4 if solved else None, BODIES[(k + t) % len(BODIES)]))
        segments += [(c, SEGMENTS[k % len(SEGMENTS)])] + ([(c, "at_risk")] if k % 7 == 3 else [])
    # Yesterday's row in each source a brief's freshness looks at.
    recent = RUN_DAY - timedelta(hours=12)
    orders.append(("O-fresh", "C0001", None, recent, "fulfilled", 6.0, None, None, None))
    tickets.append(("T-fresh", "C0002", recent, "chat", "product_question", "open", None, None, "Which roast?"))
    portal = [("PE1", "C0003", "login", recent, "{}")]

    raw = {"customers": customers, "products": PRODUCTS, "subscriptions": subscriptions, "orders": orders,
           "order_items": items, "support_tickets": tickets, "portal_events": portal}
    return {**{("raw", table): contract_frame(table, rows) for table, rows in raw.items()},
            ("analytics", "customer_segments"): pd.DataFrame(segments, columns=["customer_id", "segment"])}


def load(warehouse) -> None:
    """The contract's tables, typed as it says (money as DECIMAL(12,2)), filled with the store."""
    warehouse.execute("create schema if not exists raw")
    for table in contract.TABLES.values():
        warehouse.execute(contract.create_table_sql(table))
    for (schema, table), df in store_tables().items():
        warehouse.write_df(schema, table, df)


@pytest.fixture
def engines(monkeypatch, tmp_path):
    """(Snowflake resource on fakesnow with 7-customer chunks, DuckDB resource in one batch, customers per read)."""
    for name, value in {**ENV, "NEXTBEST_BATCH_ROWS": str(CHUNK)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False)
    held = customers_per_read(monkeypatch, SnowflakeSession)
    duck = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"), batch_rows=1_000_000)
    load(duck)
    with fakesnow.patch():
        snow = build_warehouse()
        assert isinstance(snow, SnowflakeWarehouse)
        load(snow.process_config_and_initialize())
        yield snow, duck, held


def drafts(warehouse) -> pd.DataFrame:
    return read(warehouse, f"select {DRAFT_COLUMNS} from nextbest.message_drafts order by customer_id")


def meta(result) -> dict:
    return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}


def test_drafting_in_chunks_on_snowflake_writes_what_duckdb_writes_in_one_batch(engines):
    snow, duck, held = engines
    result = materialize(message_drafts, snow, CONFIG)
    assert result.success
    assert materialize(message_drafts, duck, CONFIG).success
    on_snowflake, on_duckdb = drafts(snow), drafts(duck)
    # Segments choose (routing has not run): opted-in customers, less the permanent global holdout.
    from dagster_project.decisioning.routing import in_global_holdout

    in_holdout = in_global_holdout([f"C{k:04d}" for k in range(CUSTOMERS)])
    drafted = sum(1 for k in range(CUSTOMERS) if k % 9 != 4 and not in_holdout[k])
    assert in_holdout.any() and len(on_snowflake) == drafted and on_snowflake["cache_key"].is_unique
    assert {"pending_review"} <= set(on_snowflake["status"]) and on_snowflake["subject"].notna().any()
    assert len(set(on_snowflake["playbook_id"])) >= 5
    pd.testing.assert_frame_equal(on_snowflake, on_duckdb, check_dtype=False)
    assert held and max(held) <= CHUNK  # no read held more than a chunk of customers
    assert meta(result)["playbooks_from"] == "analytics.customer_segments"
    assert leftovers(snow) == 0
    # A rerun reuses every pending draft by its cache key, chunk by chunk, and replaces the day's rows.
    again = materialize(message_drafts, snow, CONFIG)
    pending = int((on_snowflake["status"] == "pending_review").sum())
    assert meta(again)["cache_hits"] == pending > 0
    pd.testing.assert_frame_equal(drafts(snow), on_duckdb, check_dtype=False)


def test_drafting_follows_routing_on_snowflake_as_on_duckdb(engines):
    snow, duck, _ = engines
    arms = ("treatment", "holdout", "global_holdout")
    playbooks = ("at_risk_save", "win_back", "cadence_mismatch", "onboarding", "expansion")
    decisions = pd.DataFrame([{
        "decision_id": f"rd-{c}", "run_date": pd.Timestamp(AS_OF), "decided_at": RUN_DAY - timedelta(hours=2),
        "customer_id": c, "decision": "send", "playbook_id": playbooks[k % len(playbooks)], "arm": arms[k % 3],
    } for k, c in enumerate(ids()) if k % 4 != 3])
    for warehouse in (snow.process_config_and_initialize(), duck):
        warehouse.execute("create schema if not exists nextbest")
        warehouse.execute(DECISIONS_DDL)
        warehouse.write_df("nextbest", "routing_decisions", decisions)
    result = materialize(message_drafts, snow, CONFIG)
    assert result.success and meta(result)["playbooks_from"] == DECISIONS_TABLE
    assert materialize(message_drafts, duck, CONFIG).success
    on_snowflake = drafts(snow)
    treated = decisions[decisions["arm"] == "treatment"]
    assert on_snowflake["customer_id"].tolist() == sorted(treated["customer_id"])
    assert dict(zip(on_snowflake["customer_id"], on_snowflake["playbook_id"])) == \
        dict(zip(treated["customer_id"], treated["playbook_id"]))
    pd.testing.assert_frame_equal(on_snowflake, drafts(duck), check_dtype=False)
    assert leftovers(snow) == 0

"""The `message_drafts` asset materializes in process on the tiny store: drafts for the playbook
routing chose (segments until routing runs), none for holdouts, none on stale data; drafted a
chunk of customers at a time exactly as in one batch, with one LLM budget for the whole run."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_project.decisioning.assets import DECISIONS_DDL, DECISIONS_TABLE
from dagster_project.messaging import assets as messaging_assets
from dagster_project.messaging.assets import ChunkInputs, message_drafts
from dagster_project.messaging.context_pack import packs_from_frames, read_pack_frames
from dagster_project.messaging.drafting import MemoryDraftCache
from dagster_project.resources.warehouse import DuckDBSession, DuckDBWarehouse
from tests.messaging.fake_llm import FakeLLM, grounded_reply
from tests.messaging.store import AS_OF, write_store
from tests.spies import customers_per_read, work_in_workers

NEXT_DAY = (date.fromisoformat(AS_OF) + timedelta(days=1)).isoformat()
SEGMENTS = [("C001", "cadence_mismatch"), ("C001", "at_risk"), ("C002", "onboarding"), ("C003", "win_back")]


def freshen(con, day: str = AS_OF) -> None:
    """Yesterday's rows in every source a brief is built from, for a customer no playbook targets.

    The tiny store's newest subscription and ticket are weeks old and it has no portal events.
    """
    at = datetime.combine(date.fromisoformat(day), datetime.min.time()) - timedelta(hours=12)
    con.execute("insert into raw.customers values ('C900', 'zed@example.com', 'Zed', ?, 'US', 'UTC', false, 'email')",
                [at])
    con.execute("insert into raw.subscriptions values ('S900', 'C900', 'P001', 'single_bag', 'active', 28, 14.40, ?, "
                "null, null, null, false)", [at])
    con.execute("insert into raw.orders values ('O900', 'C900', 'S900', ?, 'fulfilled', 14.40, null, null, null)", [at])
    con.execute("insert into raw.support_tickets values ('T900', 'C900', ?, 'chat', 'other', 'solved', ?, 5, 'Thanks')",
                [at, at])
    con.execute("insert into raw.portal_events values ('PE900', 'C900', 'login', ?, '{}')", [at])


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The tiny store with segments, fresh as of AS_OF; returns the DuckDB path."""
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    write_store(con)
    freshen(con)
    con.execute("create schema analytics")
    con.execute("create table analytics.customer_segments (customer_id varchar, segment varchar)")
    con.executemany("insert into analytics.customer_segments values (?, ?)", SEGMENTS)
    con.close()
    monkeypatch.setenv("NEXTBEST_AS_OF", AS_OF)
    return path


def draft(path, batch_rows: int = 50_000, config: dict | None = None, instance=None):
    return dg.materialize([message_drafts], resources={"warehouse": DuckDBWarehouse(path=str(path),
                                                                                    batch_rows=batch_rows)},
                          run_config={"ops": {"message_drafts": {"config": config or {}}}},
                          instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False)


def draft_rows(path) -> pd.DataFrame:
    """Every column a reviewer sees, without the moment the run wrote them."""
    con = duckdb.connect(str(path))
    try:
        return con.execute("select * exclude (created_at) from nextbest.message_drafts order by customer_id").df()
    finally:
        con.close()


def drafted(path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        if not con.execute("select count(*) from information_schema.tables where table_name = 'message_drafts'"
                           ).fetchone()[0]:
            return []
        return con.execute("select customer_id, playbook_id from nextbest.message_drafts order by 1").fetchall()
    finally:
        con.close()


def metadata(result) -> dict:
    return result.get_asset_materialization_events()[0].materialization.metadata


def route(path, rows, run_date: str = AS_OF) -> None:
    """Routing decisions as `routing_decisions` writes them: (customer, decision, playbook, arm)."""
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists nextbest")
    con.execute(DECISIONS_DDL)
    con.executemany(f"insert into {DECISIONS_TABLE} (decision_id, run_date, decided_at, customer_id, decision, "
                    "playbook_id, arm) values (?, ?, ?, ?, ?, ?, ?)",
                    [(f"rd-{c}", run_date, datetime(2026, 2, 22, 5), c, d, p, a) for c, d, p, a in rows])
    con.close()


def test_message_drafts_writes_checked_drafts_and_reuses_them(store):
    result = draft(store)
    assert result.success
    meta = metadata(result)
    assert meta["playbooks_from"].value == "analytics.customer_segments"  # routing has not run
    assert meta["by_status"].value == {"pending_review": 3}
    assert meta["by_generator"].value == {"template": 3}
    assert "Hi Anna" in meta["sample"].value

    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute("select customer_id, playbook_id, batch_id, status, cited_fact_ids, verdicts "
                       "from nextbest.message_drafts order by 1").fetchall()
    con.close()
    assert [(r[0], r[1]) for r in rows] == [("C001", "at_risk_save"), ("C002", "onboarding"), ("C003", "win_back")]
    assert rows[0][2] == f"at_risk_save-{AS_OF}" and rows[0][3] == "pending_review"
    assert json.loads(rows[0][4]) and all(v["passed"] for v in json.loads(rows[0][5]))

    again = draft(store)
    assert metadata(again)["cache_hits"].value == 3
    assert len(drafted(store)) == 3


def test_the_next_day_reuses_the_drafts_of_customers_whose_facts_did_not_change(store, monkeypatch):
    assert draft(store).success
    monkeypatch.setenv("NEXTBEST_AS_OF", NEXT_DAY)  # nothing new happened: the same packs, a day later
    again = draft(store)
    assert again.success and metadata(again)["cache_hits"].value == 3
    rows = draft_rows(store)
    day = rows["as_of"].astype(str).str[:10]
    first, second = rows[day == AS_OF], rows[day == NEXT_DAY]
    assert len(first) == len(second) == 3 and second["cached"].all() and not first["cached"].any()
    same = ["customer_id", "playbook_id", "subject", "body", "cta", "offer_id", "verdicts", "status", "cache_key"]
    pd.testing.assert_frame_equal(first[same].reset_index(drop=True), second[same].reset_index(drop=True))
    assert set(second["batch_id"]) == {f"{p}-{NEXT_DAY}" for p in ("at_risk_save", "onboarding", "win_back")}


def test_the_cache_reads_only_earlier_drafts_for_the_playbook_each_customer_gets_today(store):
    assert draft(store).success  # C001 at_risk_save, C002 onboarding, C003 win_back
    today = "select * from (values ('C001', 'at_risk_save'), ('C002', 'win_back')) as today(customer_id, playbook_id)"
    with DuckDBWarehouse(path=str(store)).transaction() as tx:
        cache = messaging_assets.cached_outcomes(tx, today, [])
    assert [(o.customer_id, o.playbook_id) for o in cache.outcomes.values()] == [("C001", "at_risk_save")]
    outcome = next(iter(cache.outcomes.values()))
    assert outcome.status == "pending_review" and "Hi Anna" in outcome.draft.body and outcome.verdicts


def test_routed_customer_gets_the_routed_playbook_and_holdouts_get_none(store):
    # Segments alone would give C001 at_risk_save and draft for all three.
    route(store, [("C001", "send", "cadence_mismatch", "treatment"),
                  ("C002", "holdout", "onboarding", "holdout"),
                  ("C003", "global_holdout", "win_back", "global_holdout")])
    result = draft(store)
    assert result.success
    assert metadata(result)["playbooks_from"].value == DECISIONS_TABLE
    assert drafted(store) == [("C001", "cadence_mismatch")]


def test_routing_without_decisions_for_the_day_falls_back_to_segments(store):
    route(store, [("C001", "send", "cadence_mismatch", "treatment")], run_date="2026-02-15")
    result = draft(store)
    assert result.success
    assert metadata(result)["playbooks_from"].value == "analytics.customer_segments"
    assert drafted(store) == [("C001", "at_risk_save"), ("C002", "onboarding"), ("C003", "win_back")]



def test_the_segments_fallback_drafts_nobody_routing_would_suppress(store):
    """Opted in, but unsubscribed since (or bounced): routing suppresses them, and so does the fallback,
    so reviewers do not see drafts the export would then refuse."""
    con = duckdb.connect(str(store))
    con.execute("insert into raw.email_events values ('E-unsub', 'C001', 'n', 'm', 'unsubscribe', "
                "timestamp '2026-02-10 09:00'), ('E-bounce', 'C003', 'n', 'm', 'bounce', timestamp '2026-02-11 09:00')")
    con.close()
    result = draft(store)
    assert result.success and metadata(result)["playbooks_from"].value == "analytics.customer_segments"
    assert drafted(store) == [("C002", "onboarding")]


def test_the_segments_fallback_drafts_nobody_in_the_permanent_global_holdout(store, monkeypatch):
    from dagster_project.decisioning.routing import stable_unit
    from dagster_project.messaging import assets as messaging_assets

    units = {c: stable_unit("global-holdout", c) for c in ("C001", "C002", "C003")}
    share = sorted(units.values())[1]  # a share that holds the one customer below it
    monkeypatch.setattr(messaging_assets, "FALLBACK_GLOBAL_HOLDOUT_SHARE", share)
    result = draft(store)
    assert result.success and metadata(result)["playbooks_from"].value == "analytics.customer_segments"
    held = {c for c, u in units.items() if u < share}
    assert len(held) == 1
    assert {c for c, _ in drafted(store)} == set(units) - held


def test_the_segments_fallback_holds_out_the_share_routing_last_used(store):
    from dagster_project.decisioning.routing import stable_unit

    units = {c: stable_unit("global-holdout", c) for c in ("C001", "C002", "C003")}
    share = sorted(units.values())[2]  # holds the two customers below it; the default 5% may hold none
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "routing_decisions", metadata={"run_date": "2026-02-15", "global_holdout_share": share}))
    result = draft(store, instance=instance)
    assert result.success and metadata(result)["playbooks_from"].value == "analytics.customer_segments"
    assert metadata(result)["global_holdout_share"].value == share
    held = {c for c, u in units.items() if u < share}
    assert len(held) == 2
    assert {c for c, _ in drafted(store)} == set(units) - held

def test_stale_source_stops_drafting(store):
    con = duckdb.connect(str(store))
    con.execute("delete from raw.portal_events")
    con.execute("insert into raw.portal_events values ('PE1', 'C001', 'login', timestamp '2026-02-10 09:00', '{}')")
    con.close()
    result = draft(store)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "raw.portal_events is 11 days 15 hours old" in failure and "allowed 3 days" in failure
    assert "at_risk_save" in failure and "win_back" in failure
    assert drafted(store) == []


def test_stale_playbooks_are_skipped_fresh_ones_drafted(store):
    # Five days old: past the 3 days most briefs allow, within win_back's 7. The portal had two
    # events a day before (another customer's): at that pace, five silent days are a stopped loader.
    con = duckdb.connect(str(store))
    newest = con.execute("select max(occurred_at) from raw.portal_events").fetchone()[0]
    for i in range(60):
        con.execute("insert into raw.portal_events values (?, 'C999', 'login', ?, '{}')",
                    [f"PE-busy-{i}", newest - timedelta(hours=12 * i)])
    con.execute("update raw.portal_events set occurred_at = occurred_at - interval 4 days")
    con.close()
    result = draft(store)
    assert result.success
    assert drafted(store) == [("C003", "win_back")]
    skipped = metadata(result)["skipped_stale"].value
    assert "`at_risk_save`" in skipped and "`onboarding`" in skipped and "raw.portal_events is 4 days 12 hours old" \
        in skipped and "win_back" not in skipped


def test_a_small_stores_quiet_portal_does_not_stop_drafting(store):
    """The same five silent days in a store whose portal sees a few events a month: usual, so every
    playbook drafts (a small store's quiet source is not a broken loader)."""
    con = duckdb.connect(str(store))
    con.execute("update raw.portal_events set occurred_at = occurred_at - interval 4 days")
    con.close()
    result = draft(store)
    assert result.success and "skipped_stale" not in metadata(result)
    assert ("C001", "at_risk_save") in drafted(store) and ("C003", "win_back") in drafted(store)


def test_chunks_of_two_customers_draft_as_one_batch_and_reuse_the_cache(store, monkeypatch):
    assert draft(store, batch_rows=1_000).success
    whole = draft_rows(store)
    con = duckdb.connect(str(store))
    con.execute("drop table nextbest.message_drafts")  # no cache: the chunked run drafts afresh
    con.close()
    held = customers_per_read(monkeypatch, DuckDBSession)
    instance = dg.DagsterInstance.ephemeral()
    result = draft(store, batch_rows=2, instance=instance)
    assert result.success
    pd.testing.assert_frame_equal(draft_rows(store), whole)
    assert len(whole) == 3 and not whole["cached"].any()
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert "chunk 0: 2 customers" in logged and "chunk 1: 1 customers" in logged
    assert held and max(held) <= 2  # no read held more than a chunk of customers
    assert "Hi Anna" in metadata(result)["sample"].value
    again = draft(store, batch_rows=2)
    assert metadata(again)["cache_hits"].value == 3  # the cache works chunk by chunk


def test_template_drafts_from_worker_processes_are_the_drafts_made_here(store, monkeypatch):
    assert draft(store, batch_rows=2).success
    here = draft_rows(store)
    con = duckdb.connect(str(store))
    con.execute("drop table nextbest.message_drafts")  # no cache: the workers draft afresh
    con.close()
    used = work_in_workers(monkeypatch, messaging_assets)
    result = draft(store, batch_rows=2)
    assert result.success and used == ["_template_drafts"]  # drafted in worker processes
    pd.testing.assert_frame_equal(draft_rows(store), here)
    assert metadata(result)["drafts"].value == len(here) == 3
    again = draft(store, batch_rows=2)
    assert metadata(again)["cache_hits"].value == 3  # each worker was sent its own customers' cached drafts


def test_the_llm_budget_is_the_runs_not_each_chunks(store, monkeypatch):
    # Output tokens only are priced: every request's worst case is its 700 output tokens, $0.007.
    worst = 700 * 10.0 / 1_000_000
    openai = {"generator": "openai", "max_llm_attempts": 1}
    with FakeLLM(reply=grounded_reply) as fake:
        for name, value in {"OPENAI_MODEL": "fake", "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k",
                            "NEXTBEST_LLM_RPM": "60000", "NEXTBEST_LLM_INPUT_USD_PER_MTOK": "0",
                            "NEXTBEST_LLM_OUTPUT_USD_PER_MTOK": "10"}.items():
            monkeypatch.setenv(name, value)
        assert draft(store, batch_rows=1, config=openai).success  # no budget: what each request really costs
        cost = draft_rows(store).set_index("customer_id")["cost_usd"]
        assert len(fake.requests) == 3 and (cost > 0).all() and (cost < worst).all()
        con = duckdb.connect(str(store))
        con.execute("drop table nextbest.message_drafts")  # no cache: the budgeted run drafts afresh
        con.close()
        # Enough for C001's request and C002's worst case, not for C003's as well. Each chunk is one
        # customer: with a budget per chunk all three would be sent.
        budget = float(cost["C001"] + worst + cost["C002"] / 2)
        result = draft(store, batch_rows=1, config={**openai, "budget_usd": budget})
        assert result.success
        calls = len(fake.requests) - 3
    assert calls == 2
    rows = draft_rows(store).set_index("customer_id")
    assert (rows.loc[["C001", "C002"], "prompt_tokens"] > 0).all()  # C001 and C002 were sent to the LLM
    assert rows.loc["C003", "generator"] == "template" and rows.loc["C003", "fell_back"]
    assert json.loads(rows.loc["C003", "history"])[0].startswith("budget:")
    assert metadata(result)["total_cost_usd"].value <= budget


def test_a_workers_part_holds_only_its_customers_rows_and_makes_their_packs(store):
    scope = "select customer_id from raw.customers"
    con = duckdb.connect(str(store), read_only=True)
    try:
        frames = read_pack_frames(con, scope, [], AS_OF)
    finally:
        con.close()
    whole = ChunkInputs({c: "win_back" for c in frames["customers"]["customer_id"]}, frames, MemoryDraftCache({}))
    packs = packs_from_frames(frames, AS_OF, None)
    customers = sorted(whole.playbook_of)
    first, rest = customers[:2], customers[2:]
    for mine in (first, rest):
        part = whole.part(mine)
        for name, frame in part.frames.items():
            if "customer_id" in frame:
                assert set(frame["customer_id"]) <= set(mine), name
        assert set(part.frames["items"]["order_id"]) <= set(part.frames["orders"]["order_id"])
        assert part.playbook_of == {c: "win_back" for c in mine}
        assert packs_from_frames(part.frames, AS_OF, None) == {c: packs[c] for c in mine}
    # Every row went to one part or the other: none was dropped.
    assert sum(len(whole.part(m).frames["items"]) for m in (first, rest)) == len(frames["items"]) > 0

"""`uplift_models` + `routing_decisions` on a small simulated store (segments hand-made, no dbt),
decided in chunks of a few customers exactly as in one batch."""

from __future__ import annotations

import math
import re
import shutil
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_project.decisioning import assets as decisioning_assets
from dagster_project.decisioning.assets import (DECISIONS_TABLE, decide, features_at, routing_decisions,
                                                write_decisions)
from dagster_project.decisioning.routing import RETENTION_GOALS, RoutingPolicy, goal_values
from dagster_project.ingest.simulator import simulate
from dagster_project.messaging.briefs import BRIEFS_DIR, BriefError, BriefSet, load_briefs
from dagster_project.models import uplift_assets
from dagster_project.models.uplift_assets import train_and_register
from dagster_project.models.uplift_data import GOALS, assignment_rows, point_in_time_features
from dagster_project.resources.warehouse import DuckDBSession, DuckDBWarehouse, KeyRange, connect_duckdb
from tests.spies import work_in_workers

END = date(2026, 6, 1)
ONE_BATCH = 1_000_000


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return tmp_path_factory.mktemp("routing") / "store.duckdb"


@pytest.fixture(scope="module")
def wh(store_path, store) -> DuckDBWarehouse:
    """The warehouse resource on the store (the `store` connection stays open beside it, as in one process)."""
    return DuckDBWarehouse(path=str(store_path))


@pytest.fixture(scope="module")
def store(store_path):
    path = store_path
    con = connect_duckdb(path)
    simulate(con, customers=600, months=8, seed=5, end_date=END)
    # Stand-ins for the dbt marts: everyone with a live subscription is in every segment.
    con.execute("create schema analytics")
    con.execute("""create table analytics.customer_segments as
        select distinct customer_id, unnest(['at_risk', 'cadence_mismatch', 'expansion', 'onboarding', 'dormant',
            'win_back']) as segment, 'test' as reason, date '2026-06-01' as as_of_date
        from raw.subscriptions where status = 'active'""")
    con.execute("""create table analytics.customer_tags as select customer_id, true as high_ltv, false as gift_recipient,
        false as at_risk, false as brand_advocate, false as live_subscriber from raw.customers""")
    yield con
    con.close()


def test_features_ignore_everything_after_the_anchor(store):
    anchors = store.execute("select customer_id, assigned_at as anchor_at from nextbest.assignments limit 50").df()
    before = point_in_time_features(store, anchors)
    store.execute("begin")
    store.execute("""delete from raw.email_events e using nextbest.assignments a
                     where e.customer_id = a.customer_id and e.occurred_at >= a.assigned_at""")
    store.execute("""delete from raw.portal_events e using nextbest.assignments a
                     where e.customer_id = a.customer_id and e.occurred_at >= a.assigned_at""")
    after = point_in_time_features(store, anchors)
    store.execute("rollback")
    key = ["customer_id", "anchor_at"]
    assert before.sort_values(key).reset_index(drop=True).equals(after.sort_values(key).reset_index(drop=True))


def test_train_route_and_append(store, wh):
    rows = assignment_rows(store, END)
    assert set(rows["treated"]) == {0, 1} and rows["outcome"].between(0, 1).all()
    summary = train_and_register(store, END)
    assert summary and all(s["version"].startswith("uplift_") for s in summary.values())
    decisions = decide(wh, END, RoutingPolicy())
    assert len(decisions) and set(decisions["decision"]) <= {"send", "holdout", "global_holdout", "suppressed",
                                                              "capped", "none"}
    sends = decisions[decisions["decision"] == "send"]
    assert sends["send_hour_of_week"].between(0, 167).all() and sends["model_version"].notna().all()
    assert write_decisions(wh, [decisions], END) == len(decisions)
    assert write_decisions(wh, [decisions], END) == 0  # same run date: nothing appended twice
    new = store.execute(f"""select a.arm, d.decision from nextbest.assignments a
        join {DECISIONS_TABLE} d using (assignment_id)""").fetchall()
    assert len(new) == decisions["arm"].notna().sum()
    assert all((arm == "treatment") == (decision == "send") for arm, decision in new)
    assert all((arm == "global_holdout") == (decision == "global_holdout") for arm, decision in new)


def briefs_with(tmp_path, edit) -> BriefSet:
    """The shipped briefs, copied and changed by `edit(folder)`."""
    folder = tmp_path / "briefs"
    shutil.copytree(BRIEFS_DIR, folder)
    edit(folder)
    return load_briefs(folder)


def add_loyal_refill(folder) -> None:
    """A marketer's own playbook with its own goal: the expansion brief for the expansion segment."""
    text = (folder / "expansion.yaml").read_text().replace("id: expansion", "id: loyal_refill", 1)
    text = text.replace("  tags: [live_subscriber]", "  segments: [expansion]").replace(
        "channel: email", "goal: addon_30d\nchannel: email", 1)
    (folder / "loyal_refill.yaml").write_text(text)


def test_a_new_playbook_is_routed_on_the_goal_its_brief_names(store, wh, tmp_path):
    assert train_and_register(store, END), "models of the seed playbooks"
    briefs = briefs_with(tmp_path, add_loyal_refill)
    run = decisioning_assets.plan_run(wh, END, RoutingPolicy(), briefs)
    assert "loyal_refill" not in run.models and "expansion" in run.models  # no sends yet: nothing to learn from
    decisions = decide(wh, END, RoutingPolicy(exploration_share=0.5), briefs)
    mine = decisions[decisions["playbook_id"] == "loyal_refill"]
    assert len(mine) and set(mine["goal"]) == {"addon_30d"}
    # Training reads its sends on its own goal once there are some (none yet: no model, no error).
    assert "loyal_refill" not in train_and_register(store, END, briefs=briefs)


def test_a_brief_naming_an_unknown_segment_tag_or_score_is_refused_naming_file_and_field(store, wh, tmp_path):
    """A typo in an audience targeted nobody, silently; the run now stops and says which name is unknown."""
    def typos(folder):
        for name, old, new in [("onboarding", "segments: [onboarding]", "segments: [onbording]"),
                               ("expansion", "tags: [live_subscriber]", "tags: [live_subscribr]")]:
            path = folder / f"{name}.yaml"
            assert old in path.read_text()
            path.write_text(path.read_text().replace(old, new))

    with pytest.raises(BriefError) as error:
        decide(wh, END, RoutingPolicy(), briefs_with(tmp_path, typos))
    message = str(error.value)
    assert "onboarding.yaml: audience.segments: 'onbording' is not one the warehouse has; known: at_risk," in message
    assert "expansion.yaml: audience.tags: 'live_subscribr' is not one the warehouse has" in message
    assert decisioning_assets.audience_problems(wh, load_briefs()) == []


def test_a_model_of_another_goal_does_not_value_a_playbook(store, wh, tmp_path):
    assert train_and_register(store, END)

    def login_goal(folder):
        path = folder / "at_risk_save.yaml"
        path.write_text(path.read_text().replace("channel: email", "goal: login_30d\nchannel: email", 1))

    run = decisioning_assets.plan_run(wh, END, RoutingPolicy(), briefs_with(tmp_path, login_goal))
    assert "at_risk_save" not in run.models and "win_back" in run.models


def draft_routed_batches(wh, day: date) -> None:
    """Write the day's batches as message_drafts would (awaiting review): a routed batch never drafted sends
    nothing, so only drafted ones hold their customers' caps."""
    from tests.delivery.test_approvals import write_drafts

    sent = wh.read_df(f"select customer_id, playbook_id from {DECISIONS_TABLE} where run_date = ? "
                      "and playbook_id is not null", [day])
    for playbook, rows in sent.groupby("playbook_id"):
        write_drafts(wh, f"{playbook}-{day.isoformat()}", sorted(rows["customer_id"]), playbook_id=playbook)


def test_the_next_day_does_not_route_yesterdays_customers_again(store, wh):
    routed = set(store.execute("select customer_id from nextbest.assignments where assigned_at = ?",
                               [datetime.combine(END, datetime.min.time())]).df()["customer_id"])
    assert routed, "test_train_route_and_append routes END first"
    draft_routed_batches(wh, END)
    next_day = date.fromordinal(END.toordinal() + 1)
    decided = decide(wh, next_day, RoutingPolicy()).set_index("customer_id")
    again = decided.loc[decided.index.intersection(sorted(routed))]
    # Capped (or held out for good, or suppressed): no playbook, no arm, so no assignment either.
    assert len(again) and again["decision"].isin(["capped", "global_holdout", "suppressed"]).all()
    assert (again["decision"] == "capped").any()
    assert again["playbook_id"].isna().all() and again["arm"].isna().all()
    # Only each brief's own cap: some of them get another playbook the next day.
    uncapped = decide(wh, next_day, RoutingPolicy(contact_cap_days=0)).set_index("customer_id")
    assert uncapped.loc[again.index, "decision"].isin(["send", "holdout", "global_holdout"]).any()



def test_deciding_a_written_date_again_decides_the_same(store, wh):
    written = store.execute(f"""select customer_id, decision, playbook_id, arm from {DECISIONS_TABLE}
                                where run_date = ? order by customer_id""", [END]).df()
    assert len(written), "test_train_route_and_append writes END first"
    # The date's own assignments (at END, 00:00) do not cap the customers they were made for.
    again = decide(wh, END, RoutingPolicy())[["customer_id", "decision", "playbook_id", "arm"]]
    again = again.sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(again.astype(object).where(again.notna(), None),
                                  written.astype(object).where(written.notna(), None))

def test_routing_reads_only_the_assignments_its_caps_can_see(store, wh, monkeypatch):
    train_and_register(store, END)
    read = decisioning_assets.assignment_history
    seen: dict[str, list] = {"bounded": [], "everything": []}

    def spy(kind: str):
        def history(tx, chunk, since):
            frame = read(tx, chunk, since if kind == "bounded" else datetime(1900, 1, 1))
            seen[kind].append((since, frame))
            return frame
        return history

    monkeypatch.setattr(decisioning_assets, "assignment_history", spy("bounded"))
    bounded = decide(wh, END, RoutingPolicy())
    monkeypatch.setattr(decisioning_assets, "assignment_history", spy("everything"))
    everything = decide(wh, END, RoutingPolicy())
    pd.testing.assert_frame_equal(comparable(bounded), comparable(everything), check_dtype=False)
    # The longest window is high_ltv_recovery's cap, 60 days (the contact cap is shorter).
    since = datetime.combine(END, datetime.min.time()) - pd.Timedelta(days=60)
    assert {s for s, _ in seen["bounded"]} == {since}
    kept = pd.concat([f for _, f in seen["bounded"]])
    assert len(kept) and (kept["assigned_at"] > since).all()
    assert len(kept) < sum(len(f) for _, f in seen["everything"])  # the store's older history was not read


def test_global_holdout_is_assigned_to_the_campaign_it_would_have_joined(store, wh):
    run_date = date(2026, 6, 2)  # a date of its own: test_train_route_and_append wrote END
    train_and_register(store, END)
    # No contact cap: END's customers, routed the day before, are routed again here.
    decisions = decide(wh, run_date, RoutingPolicy(global_holdout_share=0.2, contact_cap_days=0))
    write_decisions(wh, [decisions], run_date)
    arms = store.execute("""select campaign_id, playbook_id, arm, count(*) as n from nextbest.assignments
                            where assigned_at = ? group by all""", [run_date]).df()
    held = arms[arms["arm"] == "global_holdout"]
    assert len(held) and (held["campaign_id"] == "pb-" + held["playbook_id"] + "-2026-06-02").all()
    treated = set(arms.loc[arms["arm"] == "treatment", "campaign_id"])
    assert set(held["campaign_id"]) & treated  # campaign_performance pairs them: treated vs global holdout
    rows = store.execute(f"""select send_at, assignment_id from {DECISIONS_TABLE}
                             where run_date = ? and arm = 'global_holdout'""", [run_date]).fetchall()
    assert rows and all(send_at is None and assignment for send_at, assignment in rows)


def test_retention_goals_are_valued_at_predicted_clv(store, wh):
    # What a CLV makes a retention goal worth is routing.goal_values' rule; this checks routing is fed the CLV.
    train_and_register(store, END)
    policy = RoutingPolicy()
    without = decide(wh, END, policy)
    retention = without["goal"].isin(RETENTION_GOALS)
    assert retention.any()
    assert (without.loc[retention, "goal_value"] == without.loc[retention, "goal"].map(policy.goal_values)).all()
    scored = without.loc[retention, "customer_id"].iloc[0]
    store.execute("create table nextbest.customer_predictions (customer_id varchar, predicted_clv_12m double)")
    try:
        store.execute("insert into nextbest.customer_predictions values (?, 512.5)", [scored])
        decisions = decide(wh, END, policy).set_index("customer_id")
    finally:
        store.execute("drop table nextbest.customer_predictions")
    playbook = decisions.at[scored, "playbook_id"]
    worth = goal_values([scored], {playbook: GOALS[playbook][0]}, policy, pd.Series({scored: 512.5})).iat[0, 0]
    assert worth != policy.goal_values[GOALS[playbook][0]]  # the CLV, not the constant
    assert decisions.at[scored, "goal_value"] == pytest.approx(worth)
    assert f"goal worth {worth:.2f} (margin on predicted 12-month CLV)" in decisions.at[scored, "reason"]
    others = decisions.drop(index=scored)
    kept = others["goal"].isin(RETENTION_GOALS)
    assert (others.loc[kept, "goal_value"] == others.loc[kept, "goal"].map(policy.goal_values)).all()


class Held:
    """The most customers one read held, and the sizes of the batches iter_batches handed out."""

    def __init__(self, monkeypatch):
        self.customers_per_read: list[int] = []
        self.batches: list[int] = []
        read, batches = DuckDBSession.read_df, DuckDBWarehouse.iter_batches

        def spy_read(session, sql, params=None):
            df = read(session, sql, params)
            if "customer_id" in df.columns:
                self.customers_per_read.append(df["customer_id"].nunique())
            return df

        def spy_batches(warehouse, sql, batch_size=50_000, params=None):
            for batch in batches(warehouse, sql, batch_size, params):
                self.batches.append(len(batch))
                yield batch

        monkeypatch.setattr(DuckDBSession, "read_df", spy_read)
        monkeypatch.setattr(DuckDBWarehouse, "iter_batches", spy_batches)


def comparable(decisions: pd.DataFrame) -> pd.DataFrame:
    """Decisions without the moment they were made, one row per customer in id order, blanks as None."""
    frame = decisions.drop(columns=["decided_at"]).sort_values("customer_id").reset_index(drop=True).astype(object)
    return frame.where(frame.notna(), None)


def test_chunks_of_seven_customers_decide_as_one_batch(store, wh, monkeypatch):
    train_and_register(store, END)
    whole = decide(wh, END, RoutingPolicy(), batch_rows=ONE_BATCH)
    held = Held(monkeypatch)
    chunked = decide(wh, END, RoutingPolicy(), batch_rows=7)
    pd.testing.assert_frame_equal(comparable(chunked), comparable(whole), check_dtype=False)
    assert set(chunked["decision"]) >= {"send", "global_holdout"} and chunked["send_hour_of_week"].notna().any()
    customers = store.execute("select count(*) from (select customer_id from analytics.customer_segments "
                              "union select customer_id from analytics.customer_tags)").fetchone()[0]
    assert len(held.batches) == math.ceil(customers / 7) and max(held.batches) <= 7
    assert held.customers_per_read and max(held.customers_per_read) <= 7  # no read held more than a chunk


def test_chunks_decided_in_worker_processes_decide_as_one_batch(store, wh, monkeypatch):
    train_and_register(store, END)
    whole = decide(wh, END, RoutingPolicy(), batch_rows=ONE_BATCH)
    used = work_in_workers(monkeypatch, decisioning_assets)
    apart = decide(wh, END, RoutingPolicy(), batch_rows=100)  # a few chunks, decided in two worker processes
    assert used == ["_decide_in_worker"]
    pd.testing.assert_frame_equal(comparable(apart), comparable(whole), check_dtype=False)


def test_the_asset_appends_chunked_decisions_in_one_go(store, store_path):
    train_and_register(store, END)
    run_date = date(2026, 6, 3)
    expected = comparable(decide(DuckDBWarehouse(path=str(store_path)), run_date, RoutingPolicy()))
    config = {"ops": {"routing_decisions": {"config": {"as_of": run_date.isoformat()}}}}
    chunked = DuckDBWarehouse(path=str(store_path), batch_rows=50)
    result = dg.materialize([routing_decisions], resources={"warehouse": chunked}, run_config=config,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["appended"].value == len(expected)
    assert meta["global_holdout_share"].value == RoutingPolicy().global_holdout_share  # the drafts' fallback reads it
    written = store.execute(f"select * from {DECISIONS_TABLE} where run_date = ?", [run_date]).df()
    same = ["decision_id", "customer_id", "decision", "playbook_id", "arm", "expected_value", "send_hour_of_week",
            "campaign_id", "assignment_id", "reason_codes"]
    pd.testing.assert_frame_equal(comparable(written)[same], expected[same], check_dtype=False)
    assigned = store.execute("select count(*) from nextbest.assignments where assigned_at = ?", [run_date]).fetchone()
    assert assigned[0] == expected["arm"].notna().sum()
    again = dg.materialize([routing_decisions], resources={"warehouse": chunked}, run_config=config,
                           instance=dg.DagsterInstance.ephemeral())
    again_meta = again.get_asset_materialization_events()[0].materialization.metadata
    assert again_meta["appended"].value == 0 and again_meta["global_holdout_share"].value == 0.05
    assert store.execute(f"select count(*) from {DECISIONS_TABLE} where run_date = ?",
                         [run_date]).fetchone()[0] == len(expected)
    leftovers = store.execute("select count(*) from information_schema.tables where table_name like 'nb_stage_%'")
    assert leftovers.fetchone()[0] == 0


def test_features_from_the_mart_match_what_uplift_training_reads(tmp_path):
    # Weekly feature rows, some after the anchor: both readers take the latest on or before it.
    con = duckdb.connect(str(tmp_path / "mart.duckdb"))
    con.execute("create schema analytics")
    con.execute("""create table analytics.customer_features as
        select 'C' || c as customer_id, date '2026-05-04' + (7 * w)::integer as as_of_date, c * 10 + w as orders_90d,
               (c + w) % 2 = 0 as is_subscriber
        from range(1, 6) t(c), range(0, 6) s(w) where not (c = 3 and w < 5)""")
    con.close()
    at = datetime(2026, 5, 26)
    customers = pd.Index(["C1", "C2", "C3", "C4", "C5"], name="customer_id")
    with DuckDBWarehouse(path=str(tmp_path / "mart.duckdb")).transaction() as tx:
        ours = features_at(tx, customers, KeyRange("C1", "C5", 5), at)
        theirs = point_in_time_features(tx.dbapi(), pd.DataFrame({"customer_id": customers, "anchor_at": at}))
    theirs = theirs.set_index("customer_id").reindex(customers)

    def blanks_as_none(frame):
        frame = frame[sorted(frame.columns)].astype(object)
        return frame.where(frame.notna(), None)

    pd.testing.assert_frame_equal(blanks_as_none(ours), blanks_as_none(theirs), check_dtype=False)
    assert ours.loc["C1", "orders_90d"] == 13 and pd.isna(ours.loc["C3", "orders_90d"])  # C3's first row is later


def test_uplift_trains_on_the_dbt_training_sample_only(store, tmp_path):
    """Above var training_customers the weekly feature history covers a sample; customers outside it
    have no features at their past sends and are not training rows (the SQL fallback keeps everyone)."""
    everyone = assignment_rows(store, END)
    copy = tmp_path / "sampled.duckdb"
    store.execute(f"attach '{copy}' as sampled")
    try:
        store.execute("copy from database store to sampled")  # the module's store, untouched
    finally:
        store.execute("detach sampled")
    con = duckdb.connect(str(copy))
    try:
        con.execute("create table analytics.customer_features as select customer_id, date '2026-01-05' as as_of_date "
                    "from raw.customers")
        con.execute("create schema intermediate")
        con.execute("create table intermediate.int_training_customers as select customer_id from raw.customers "
                    "order by customer_id limit 200")
        sample = {r[0] for r in con.execute("select customer_id from intermediate.int_training_customers").fetchall()}
        rows = assignment_rows(con, END)
    finally:
        con.close()
    assert len(rows) and set(rows["customer_id"]) <= sample
    pd.testing.assert_frame_equal(rows, everyone[everyone["customer_id"].isin(sample)].reset_index(drop=True),
                                  check_dtype=False)
    assert len(everyone) > len(rows)


def test_definitions_load():
    defs = dg.Definitions(
        assets=[*uplift_assets.assets, *decisioning_assets.assets],
        asset_checks=[*uplift_assets.asset_checks, *decisioning_assets.asset_checks],
        jobs=[*uplift_assets.jobs, *decisioning_assets.jobs],
        schedules=[*uplift_assets.schedules, *decisioning_assets.schedules],
        resources={"warehouse": decisioning_assets.DuckDBWarehouse(path="/tmp/unused.duckdb")})
    assert defs.resolve_job_def("daily_routing") is not None
    deps = defs.resolve_asset_graph().get(dg.AssetKey("routing_decisions")).parent_keys
    assert dg.AssetKey("customer_predictions") in deps


def route_on(store_path, run_date: date):
    config = {"ops": {"routing_decisions": {"config": {"as_of": run_date.isoformat()}}}}
    return dg.materialize([routing_decisions], resources={"warehouse": DuckDBWarehouse(path=str(store_path))},
                          run_config=config, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_stale_data_routes_nothing_so_nobody_is_assigned_or_capped_for_messages_never_written(store, store_path):
    """Drafting refuses a playbook whose sources are older than its brief allows; routing it anyway would
    put customers in treatment and holdout arms (and cap them) for messages that never get written."""
    late = date(2026, 7, 1)  # a month after the store's last data
    result = route_on(store_path, late)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "every playbook is stale" in str(failure.event_specific_data.error)
    assert store.execute(f"select count(*) from {DECISIONS_TABLE} where run_date = ?", [late]).fetchone()[0] == 0
    assert store.execute("select count(*) from nextbest.assignments where assigned_at = ?", [late]).fetchone()[0] == 0


def test_only_the_playbooks_fresh_enough_for_their_brief_are_routed(store, store_path, tmp_path, monkeypatch):
    def patient_win_back(folder):
        path = folder / "win_back.yaml"
        path.write_text(re.sub(r"max_data_staleness_days: \d+", "max_data_staleness_days: 60", path.read_text()))

    monkeypatch.setenv("NEXTBEST_BRIEFS_DIR", str(briefs_with(tmp_path, patient_win_back).folder))
    late = date(2026, 7, 2)
    result = route_on(store_path, late)
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert "win_back" not in meta["skipped_stale"].value and "at_risk_save" in meta["skipped_stale"].value
    routed = store.execute(f"select distinct playbook_id from {DECISIONS_TABLE} where run_date = ? "
                           "and playbook_id is not null", [late]).fetchall()
    assert routed == [("win_back",)]


def test_campaigns_rejected_or_never_drafted_cap_nobody(store, wh, monkeypatch):
    monkeypatch.delenv("NEXTBEST_AS_OF", raising=False)  # 'too old' is judged on the routing day
    """A routed batch that is rejected, or never drafted, sends nothing: its customers are free the next day;
    one awaiting review still holds its customers' caps (it may yet be approved)."""
    from dagster_project.delivery.approvals import record_decision, unsent_campaigns
    from dagster_project.ingest.contract import campaign_id
    from tests.delivery.test_approvals import write_drafts

    d1, d2 = date(2026, 6, 10), date(2026, 6, 11)
    first = decide(wh, d1, RoutingPolicy())
    write_decisions(wh, [first], d1)
    sent = first[first["decision"] == "send"]
    playbook = sent["playbook_id"].value_counts().index[0]
    customers = sorted(sent.loc[sent["playbook_id"] == playbook, "customer_id"])
    batch = f"{playbook}-{d1.isoformat()}"

    def unsent() -> frozenset:
        with wh.transaction() as tx:
            return unsent_campaigns(tx, d1, d2)

    def capped() -> int:
        decided = decide(wh, d2, RoutingPolicy()).set_index("customer_id")
        return int((decided.reindex(customers)["decision"] == "capped").sum())

    assert campaign_id(batch) in unsent()  # routed, never drafted
    free = capped()
    write_drafts(wh, batch, customers, playbook_id=playbook)
    assert campaign_id(batch) not in unsent()  # awaiting review: it may still go out
    held = capped()
    record_decision(wh, batch, "reject", "maria", "tone too pushy")
    assert campaign_id(batch) in unsent()
    assert capped() == free < held == len(customers)

    # Drafted and never decided on: it holds its caps while it may still be approved, not once it is too old
    # to (win_back's brief allows 7 days, the others 3).
    other = next(p for p in sent["playbook_id"].unique() if p != playbook)
    pending = f"{other}-{d1.isoformat()}"
    write_drafts(wh, pending, sorted(sent.loc[sent["playbook_id"] == other, "customer_id"]), playbook_id=other)
    with wh.transaction() as tx:
        assert campaign_id(pending) not in unsent_campaigns(tx, d1, d2)
        assert campaign_id(pending) in unsent_campaigns(tx, d1, d1 + timedelta(days=8))


def test_a_rerun_of_a_decided_day_routes_only_the_customers_it_has_no_decision_for(store, store_path):
    """Customers imported after the day's first run are routed by a rerun the same day; nobody else is
    decided, or assigned, twice."""
    day = date(2026, 6, 4)  # a day no other test routes; the store's data (to June 1) is still fresh
    first = route_on(store_path, day)
    assert first.get_asset_materialization_events()[0].materialization.metadata["appended"].value > 0
    decided = store.execute(f"select * from {DECISIONS_TABLE} where run_date = ? order by customer_id", [day]).df()
    late = decided.loc[decided["playbook_id"].notna(), "customer_id"].head(5).tolist()
    # As if these five arrived after the first run: no decision, no assignment that day.
    store.execute(f"delete from {DECISIONS_TABLE} where run_date = ? and customer_id in (select unnest(?))", [day, late])
    store.execute("delete from nextbest.assignments where assigned_at = ? and customer_id in (select unnest(?))",
                  [datetime.combine(day, datetime.min.time()), late])
    again = route_on(store_path, day)
    assert again.get_asset_materialization_events()[0].materialization.metadata["appended"].value == len(late)
    now = store.execute(f"select * from {DECISIONS_TABLE} where run_date = ? order by customer_id", [day]).df()
    same = ["decision_id", "customer_id", "decision", "playbook_id", "arm", "assignment_id"]
    pd.testing.assert_frame_equal(now[same].reset_index(drop=True), decided[same].reset_index(drop=True))
    assigned = store.execute("select count(*), count(distinct customer_id) from nextbest.assignments "
                             "where assigned_at = ?", [datetime.combine(day, datetime.min.time())]).fetchone()
    assert assigned[0] == assigned[1] == decided["arm"].notna().sum()
    third = route_on(store_path, day)  # nothing left to decide
    assert third.get_asset_materialization_events()[0].materialization.metadata["appended"].value == 0
    # A run that decided everyone meanwhile: what it would add is there already, and it says so.
    wh = DuckDBWarehouse(path=str(store_path))
    assert write_decisions(wh, [decide(wh, day, RoutingPolicy())], day, adding=True) == 0
    assert store.execute(f"select count(*) from {DECISIONS_TABLE} where run_date = ?", [day]).fetchone()[0] == len(now)

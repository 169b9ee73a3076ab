"""esp_export end to end in process with the file ESP: only approved, unchanged batches whose
data is fresh go out, each message once; and the delivery definitions wire together."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_project.delivery import approvals
from dagster_project.delivery.assets import assets, campaign_lift, esp_export, jobs, lift_table_markdown, playbook_lift
from dagster_project.delivery.esp import FileEsp
from dagster_project.delivery.sensors import sensors
from dagster_project.resources.warehouse import DuckDBWarehouse
from tests.delivery.test_approvals import BATCH, RUN_DAY, write_drafts

CUSTOMERS = [f"c{i}" for i in range(12)]
BLOCKED = {"c4"}


def afternoon_zone() -> str:
    """A fixed-offset zone where it is about 2 pm now, so quiet hours never defer these sends."""
    offset = (14 - datetime.now(timezone.utc).hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def fresh_sources(warehouse, age: timedelta = timedelta(hours=1)) -> None:
    """One row `age` old in every raw source a brief is built from (the export checks their freshness)."""
    at = datetime.now(timezone.utc).replace(tzinfo=None) - age
    with warehouse.transaction() as tx:
        tx.execute("insert into raw.subscriptions values ('s0', 'c0', 'P1', 'single_bag', 'active', 28, 14.0, ?, "
                   "null, null, null, false)", [at])
        tx.execute("insert into raw.orders values ('o0', 'c0', 's0', ?, 'fulfilled', 14.0, null, null, null)", [at])
        tx.execute("insert into raw.support_tickets values ('t0', 'c0', ?, 'chat', 'other', 'solved', ?, 5, "
                   "'Thanks')", [at, at])
        tx.execute("insert into raw.portal_events values ('pe0', 'c0', 'login', ?, '{}')", [at])


@pytest.fixture
def db(warehouse, monkeypatch):
    monkeypatch.delenv("NEXTBEST_AS_OF", raising=False)  # freshness is judged against the real clock
    warehouse.execute("update raw.customers set timezone = ?", [afternoon_zone()])
    fresh_sources(warehouse)
    write_drafts(warehouse, BATCH, CUSTOMERS, blocked=BLOCKED)
    return Path(warehouse.path)


def export(db, tmp_path, batch: str | None = BATCH):
    config = {"batch": batch, "max_wait_seconds": 2.0} if batch else {"max_wait_seconds": 2.0}
    return dg.materialize(
        [esp_export],
        resources={"warehouse": DuckDBWarehouse(path=str(db)), "esp": FileEsp(path=str(tmp_path / "out.jsonl"))},
        run_config={"ops": {"esp_export": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )


def sent_lines(tmp_path) -> list[dict]:
    path = tmp_path / "out.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def decide(db, *args, **kwargs):
    return approvals.record_decision(DuckDBWarehouse(path=str(db)), *args, **kwargs)


def failure_message(result) -> str:
    return next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message


def test_an_approved_batch_is_sent_once_with_counts_per_state(db, tmp_path):
    decide(db, BATCH, "approve", "ana")
    result = export(db, tmp_path)
    assert result.success
    lines = sent_lines(tmp_path)
    assert sorted(line["customer_id"] for line in lines) == sorted(set(CUSTOMERS) - BLOCKED)
    # The campaign id routing gave the assignments (pb-<playbook>-<run date>): ESP events come back on it.
    assert {line["campaign_id"] for line in lines} == {f"pb-{BATCH}"} == {f"pb-at_risk_save-{RUN_DAY}"}
    (materialization,) = result.asset_materializations_for_node("esp_export")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["queued"] == 11 and meta["sent"] == 11 and meta["outbox_sent"] == 11
    assert meta["outbox_queued"] == 0 and meta["outbox_dead"] == 0
    assert meta["outbox_by_state"]["sent"] == 11

    # the same run again (a retry, or the daily job): nothing is sent twice
    again = export(db, tmp_path)
    assert again.success
    assert len(sent_lines(tmp_path)) == 11
    (materialization,) = again.asset_materializations_for_node("esp_export")
    assert materialization.metadata["queued"].value == 0 and materialization.metadata["sent"].value == 0


def test_an_unapproved_or_changed_batch_is_not_sent(db, tmp_path):
    not_approved = export(db, tmp_path)
    assert not not_approved.success
    assert f"Not exporting {BATCH}: batch {BATCH} has not been approved" in failure_message(not_approved)

    decide(db, BATCH, "approve", "ana")
    with duckdb.connect(str(db)) as con:
        con.execute("update nextbest.message_drafts set subject = 'Last chance!' where customer_id = 'c2'")
    changed = export(db, tmp_path)
    assert not changed.success
    assert "changed after ana approved them" in failure_message(changed)
    assert sent_lines(tmp_path) == []


def test_without_a_batch_every_holding_approval_is_sent(db, tmp_path):
    write_drafts(DuckDBWarehouse(path=str(db)), f"win_back-{RUN_DAY}", ["c20", "c21"], playbook_id="win_back")
    write_drafts(DuckDBWarehouse(path=str(db)), f"expansion-{RUN_DAY}", ["c30"], playbook_id="expansion")
    decide(db, BATCH, "approve", "ana")
    decide(db, f"win_back-{RUN_DAY}", "approve", "ana")
    decide(db, f"win_back-{RUN_DAY}", "reject", "ben", "not this week")
    result = export(db, tmp_path, batch=None)
    assert result.success
    assert {line["batch_id"] for line in sent_lines(tmp_path)} == {BATCH}


def test_a_batch_on_stale_data_is_not_sent(db, tmp_path):
    decide(db, BATCH, "approve", "ana")
    with duckdb.connect(str(db)) as con:
        con.execute("update raw.orders set ordered_at = ordered_at - interval 10 days")
    for batch in (BATCH, None):
        result = export(db, tmp_path, batch=batch)
        assert not result.success
        message = failure_message(result)
        assert f"Not exporting {BATCH}: the data behind it is stale" in message
        assert "Playbook at_risk_save" in message and "raw.orders is 10 days 1 hour old" in message
    assert sent_lines(tmp_path) == []
    with duckdb.connect(str(db)) as con:
        assert not con.execute("select count(*) from information_schema.tables where table_name = 'outbox'"
                               ).fetchone()[0] or not con.execute("select count(*) from nextbest.outbox").fetchone()[0]

    with duckdb.connect(str(db)) as con:  # the loader catches up: the same approval now goes out
        con.execute("update raw.orders set ordered_at = ordered_at + interval 10 days")
    assert export(db, tmp_path).success
    assert len(sent_lines(tmp_path)) == len(CUSTOMERS) - len(BLOCKED)


def test_delivery_definitions_wire_together(tmp_path):
    defs = dg.Definitions(
        assets=assets, jobs=jobs, sensors=sensors,
        resources={"warehouse": DuckDBWarehouse(path=str(tmp_path / "w.duckdb")),
                   "esp": FileEsp(path=str(tmp_path / "out.jsonl"))},
    )
    assert defs.resolve_job_def("approve_batch") is not None
    assert defs.resolve_job_def("export_approved_batch") is not None
    assert defs.resolve_sensor_def("approved_batches_sensor").job_name == "export_approved_batch"
    graph = defs.resolve_asset_graph()
    assert graph.get(esp_export.key).group_name == "delivery"
    assert graph.get(campaign_lift.key).group_name == "measurement"
    assert graph.get(dg.AssetKey(["nextbest", "assignments"])).group_name == "decisioning"


def test_lift_table_pools_finished_campaigns_per_playbook():
    performance = pd.DataFrame([
        # playbook, campaign, control arm, finished, treated n / conversions, control n / conversions
        ("expansion", "e1", "holdout", True, 1000, 300, 250, 25),
        ("expansion", "e2", "holdout", True, 1000, 300, 250, 25),
        ("expansion", "e2", "global_holdout", True, 1000, 300, 100, 10),
        ("expansion", "e3", "holdout", False, 1000, 900, 250, 0),  # still in its window: left out
        ("win_back", "w1", "holdout", True, 400, 40, 100, 10),
    ], columns=["playbook_id", "campaign_id", "control_arm", "window_complete", "treated_customers",
                "treated_conversions", "control_customers", "control_conversions"]).assign(goal="g")
    lift = playbook_lift(performance).set_index("playbook_id")
    assert lift.loc["expansion", "campaigns"] == 2 and lift.loc["expansion", "control"] == 500
    assert lift.loc["expansion", "lift"] == pytest.approx(0.2)
    assert lift.loc["expansion", "ci_low"] < 0.2 < lift.loc["expansion", "ci_high"]
    assert lift.loc["expansion", "ci_low"] > 0
    assert lift.loc["win_back", "ci_low"] < 0 < lift.loc["win_back", "ci_high"]
    table = lift_table_markdown(playbook_lift(performance))
    assert "| expansion | g | 2 | 2,000 | 500 | 30.0% | 10.0% | +20.0 |" in table


def night_zone() -> str:
    """A fixed-offset zone where it is about 3 am now: inside every customer's quiet hours."""
    offset = (3 - datetime.now(timezone.utc).hour + 12) % 24 - 12
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def test_sends_deferred_to_the_end_of_quiet_hours_are_said_and_left_queued(db, tmp_path):
    with duckdb.connect(str(db)) as con:
        con.execute("update raw.customers set timezone = ? where customer_id = 'c1'", [night_zone()])
    decide(db, BATCH, "approve", "ana")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [esp_export], instance=instance,
        resources={"warehouse": DuckDBWarehouse(path=str(db)), "esp": FileEsp(path=str(tmp_path / "out.jsonl"))},
        run_config={"ops": {"esp_export": {"config": {"batch": BATCH, "max_wait_seconds": 2.0}}}})
    assert result.success
    (materialization,) = result.asset_materializations_for_node("esp_export")
    assert materialization.metadata["deferred"].value == 1 and materialization.metadata["sent"].value == 10
    assert "c1" not in {line["customer_id"] for line in sent_lines(tmp_path)}
    said = [entry.user_message for entry in instance.all_logs(result.run_id) if entry.user_message]
    assert any("1 messages wait for the recipients' quiet hours to end" in line
               and "the export_due_hourly schedule runs one every hour" in line for line in said)


def test_the_hourly_schedule_exports_whatever_has_come_due():
    from dagster_project.definitions import defs

    schedule = defs.get_schedule_def("export_due_hourly")
    (request,) = schedule.evaluate_tick(dg.build_schedule_context()).run_requests
    assert schedule.job_name == "export_approved_batch" and schedule.cron_schedule == "15 * * * *"
    assert request.run_config == {"ops": {"esp_export": {"config": {}}}}  # no batch: all that is due


def test_review_says_where_an_exported_batchs_messages_are(db, tmp_path, capsys):
    from dagster_project.cli import main

    decide(db, BATCH, "approve", "ana")
    assert main(["review", BATCH, "--db", str(db)]) == 0
    assert "  outbox: nothing queued yet" in capsys.readouterr().out
    assert export(db, tmp_path).success
    assert main(["review", BATCH, "--db", str(db)]) == 0
    assert "  outbox: sent 11" in capsys.readouterr().out
    assert main(["review", "--db", str(db)]) == 0
    assert "; outbox: sent 11" in capsys.readouterr().out


def test_nextbest_export_sends_an_approved_batch_once_and_says_why_not_otherwise(db, tmp_path, monkeypatch, capsys):
    from dagster_project.cli import main

    out = tmp_path / "sent.jsonl"
    monkeypatch.setenv("NEXTBEST_ESP", "file")
    monkeypatch.setenv("NEXTBEST_OUTBOX_FILE", str(out))
    assert main(["export", "nosuch-2026-06-30", "--db", str(db)]) == 1
    assert "there is no batch nosuch-2026-06-30" in capsys.readouterr().err
    assert main(["export", BATCH, "--db", str(db)]) == 1
    assert f"batch {BATCH} has not been approved" in capsys.readouterr().err and not out.exists()

    assert main(["approve", BATCH, "--by", "maria", "--db", str(db)]) == 0
    assert f"nextbest export {BATCH}" in capsys.readouterr().out
    assert main(["export", BATCH, "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    sendable = len(CUSTOMERS) - len(BLOCKED)
    assert f"Exported to file: {BATCH}" in printed and f"sent {sendable}," in printed
    assert main(["export", "--db", str(db)]) == 0  # every approved batch: nothing is sent twice
    assert f"already in the outbox {sendable}, sent 0," in capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == sendable
    # The ESP gets what the reviewer approved beside the body: the preheader, and the offer the body words.
    assert {(x["preheader"], x["offer_id"]) for x in lines} == {("Your next bag is on us", "SAVE15")}


def test_lift_leaves_out_routed_campaigns_that_were_never_sent(warehouse, capsys):
    """Two finished expansion campaigns; the second was routed but never approved, so its treated customers
    got nothing, like its holdout: pooled in, it would pull the playbook's lift toward zero."""
    warehouse.execute("create schema if not exists analytics")
    warehouse.execute("create schema if not exists nextbest")
    warehouse.execute("""create table analytics.campaign_performance as select * from (values
        ('expansion', 'addon_30d', 'pb-expansion-2026-03-01', 'holdout', true, 1000, 300, 250, 25),
        ('expansion', 'addon_30d', 'pb-expansion-2026-03-02', 'holdout', true, 1000, 100, 250, 25))
        as t(playbook_id, goal, campaign_id, control_arm, window_complete, treated_customers, treated_conversions,
             control_customers, control_conversions)""")
    warehouse.execute("""create table nextbest.routing_decisions as select * from (values
        ('pb-expansion-2026-03-01', 'expansion', date '2026-03-01'),
        ('pb-expansion-2026-03-02', 'expansion', date '2026-03-02')) as t(campaign_id, playbook_id, run_date)""")
    warehouse.execute("""create table nextbest.outbox as select * from (values
        ('expansion-2026-03-01', 'message')) as t(batch_id, kind)""")
    result = dg.materialize([campaign_lift], resources={"warehouse": warehouse},
                            instance=dg.DagsterInstance.ephemeral())
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["campaigns_not_sent"] == 1 and meta["finished_campaigns"] == 1
    assert "| expansion | addon_30d | 1 | 1,000 | 250 | 30.0% | 10.0% | +20.0 |" in meta["lift_by_playbook"]

    from dagster_project.cli import main

    assert main(["lift", "--db", warehouse.path]) == 0  # the marketer's view of the same
    printed = capsys.readouterr().out
    assert "| expansion | addon_30d | 1 | 1,000 | 250 | 30.0% | 10.0% | +20.0 |" in printed
    assert "Campaigns: 1 finished (pooled above), 0 still inside their goal window" in printed
    assert "1 never sent (left out)" in printed

"""Daily incremental runs of the point-in-time history (and of the other incremental models:
the event and order staging tables, subscription cycles, weekly engagement, campaign outcomes, the
carried-forward lifetime totals) give exactly the rows of a full rebuild.

A small simulated store is built in full on a Friday (D). Then, day by day, a loader
appends what happened - orders with add-ons, subscription cycles, failed payments, campaign
assignments and their emails opened and converted, logins, cancel attempts, pauses, a cancellation, a cadence change,
tickets opened and resolved, new sign-ups, orders re-sent as they ship, a test order deleted - plus late
events dated the day before,
and dbt runs incrementally: Saturday (the next day), Monday (a skipped day; the
scoring point is a Monday) and Tuesday (that Monday becomes a weekly point). After
each run every feature and label table must equal a `--full-refresh` build of the same
data, row for row. The training sample is capped below the number of customers so
that new sign-ups push customers out of it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta

import duckdb
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from tests.warehouse.dbt_warehouse import Warehouse, new_warehouse

simulator = pytest.importorskip("dagster_project.ingest.simulator")

FRIDAY = date(2025, 6, 27)  # the full build; the store ends at the end of this day
DAYS = [date(2025, 6, 28), date(2025, 6, 30), date(2025, 7, 1)]  # Saturday, Monday, Tuesday
CUSTOMERS = 160
VARS = {"training_customers": 120}  # below CUSTOMERS: the sample is a real pick
# int_features_lifetime runs after int_features_activity (which reads the previous run's totals)
MODELS = ["+customer_features", "+customer_labels", "int_features_lifetime", "+int_orders_per_cycle",
          "+int_engagement_by_week", "+int_campaign_outcomes"]
INCREMENTAL = ["int_features_daily", "int_features_activity", "int_features_lifetime", "int_features_subscriptions",
               "int_features_cycles", "customer_features", "customer_labels", "int_orders_per_cycle",
               "int_engagement_by_week", "int_campaign_outcomes",
               "stg_raw__email_events", "stg_raw__portal_events", "stg_raw__payments",
               "stg_raw__orders", "stg_raw__order_items"]
TABLES = ["staging.stg_raw__email_events", "staging.stg_raw__portal_events", "staging.stg_raw__payments",
          "staging.stg_raw__orders", "staging.stg_raw__order_items",
          "intermediate.int_orders_per_cycle", "intermediate.int_engagement_by_week", "intermediate.int_campaign_outcomes",
          "intermediate.int_features_daily", "intermediate.int_features_activity", "intermediate.int_features_lifetime",
          "intermediate.int_features_subscriptions", "intermediate.int_features_cycles",
          "intermediate.int_training_customers", "analytics.customer_features", "analytics.customer_labels"]


def run(wh: Warehouse, as_of: date, *extra: str) -> None:
    """`dbt run` of the features and labels (and what they read) at `as_of`."""
    result = wh.dbt("run", "--select", *MODELS, *extra, as_of=as_of, dbt_vars=VARS)
    assert result.returncode == 0, f"dbt run failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"


# Columns that say which run wrote a row, not what it holds: a full refresh writes every row at once.
RUN_COLUMNS = {"intermediate.int_features_lifetime": ["counted_before"]}


# Weekly points only for the customers of int_training_customers (the scoring point for everyone).
SAMPLED = {"intermediate.int_features_activity", "intermediate.int_features_subscriptions",
           "intermediate.int_features_cycles", "analytics.customer_features", "analytics.customer_labels"}


def rows(wh: Warehouse, table: str, where: str = "true") -> list[tuple]:
    """Every row of `table` (bar its RUN_COLUMNS) matching `where`, in a fixed order."""
    skipped = f" exclude ({', '.join(RUN_COLUMNS[table])})" if table in RUN_COLUMNS else ""
    with duckdb.connect(str(wh.path), read_only=True) as con:
        return sorted(con.execute(f"select *{skipped} from {table} where {where}").fetchall(), key=repr)


def md5(customer_id: str) -> str:
    """The hash int_training_customers orders customers by (dbt.hash: md5 of the id, hex)."""
    return hashlib.md5(customer_id.encode()).hexdigest()


def at(day: date, hour: int) -> datetime:
    """`hour` o'clock on `day` (UTC)."""
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=hour)


def load_day(path, day: date, n: int) -> None:
    """Append what happened on `day` (and one late event of the day before), as a loader would."""
    with duckdb.connect(str(path)) as con:
        live = [r[0] for r in con.execute(
            "select customer_id from raw.subscriptions where cancelled_at is null and started_at < ? "
            "and status = 'active' order by md5(customer_id || ?) limit 8", [at(day, 0), str(day)]).fetchall()]
        assert len(live) == 8, "the simulated store needs live subscribers"
        busy, churner, switcher = live[:6], live[6], live[7]
        for i, customer in enumerate(busy):
            key = f"INC{n}-{i}"
            message = f"INC-M{n}-{i}"
            campaign = f"pb-at_risk_save-{day.isoformat()}"
            for kind, hour in (("sent", 9), ("open", 10), ("click", 11), ("conversion", 12)):
                con.execute("insert into raw.email_events values (?, ?, ?, ?, ?, ?)",
                            [f"{key}-{kind}", customer, campaign, message, kind, at(day, hour)])
            for kind, hour in (("login", 13), ("cancel_attempt", 14)):
                con.execute("insert into raw.portal_events values (?, ?, ?, ?, '{}')",
                            [f"{key}-{kind}", customer, kind, at(day, hour)])
            con.execute("insert into raw.orders values (?, ?, null, ?, 'fulfilled', 42.50, 'SAVE15', null, null)",
                        [f"{key}-O", customer, at(day, 15)])
            con.execute("insert into raw.order_items values (?, 'P001', 1, 42.50, true)", [f"{key}-O"])
            con.execute("insert into raw.payments values (?, ?, ?, ?, 'failed', 'card_declined', 42.50)",
                        [f"{key}-PAY", customer, f"{key}-O", at(day, 16)])
            con.execute("insert into raw.support_tickets values (?, ?, ?, 'chat', 'delivery_delay', 'open', "
                        "null, null, 'Where is my coffee?')", [f"{key}-T", customer, at(day, 17)])
            # the campaign's assignment: treated, or held out (no email goes out then)
            con.execute("insert into nextbest.assignments values (?, ?, 'at_risk_save', ?, ?, ?, ?)",
                        [f"{key}-A", campaign, customer, at(day, 8), "holdout" if i == 5 else "treatment", message])
        # subscription cycles: a skip today, and a delivery dated the day before (loaded late)
        for customer, status, when in ((busy[2], "skipped", at(day, 6)),
                                       (busy[3], "fulfilled", at(day - timedelta(days=1), 23))):
            sub_id = con.execute("select subscription_id from raw.subscriptions where customer_id = ? "
                                 "and cancelled_at is null", [customer]).fetchone()[0]
            con.execute("insert into raw.orders values (?, ?, ?, ?, ?, 30.00, null, null, null)",
                        [f"INC{n}-{customer}-cycle", customer, sub_id, when, status])
        # orders re-sent as they move on (the loader sends the whole row again, with the time of its
        # new state): one of the last days ships today; one placed weeks ago, long staged, is
        # confirmed delivered today; and one of today's is re-sent unchanged
        resent = [con.execute("insert into raw.orders select order_id, customer_id, subscription_id, ordered_at, "
                              "status, total, discount_code, ?, ? from raw.orders where ordered_at >= ? and ordered_at < ? "
                              "order by order_id limit 1",
                              [shipped, delivered, since, until]).fetchone()[0]
                  for shipped, delivered, since, until in (
                      (at(day, 2), None, at(day - timedelta(days=6), 0), at(day, 0)),
                      (at(day - timedelta(days=20), 9), at(day, 3), at(day - timedelta(days=40), 0),
                       at(day - timedelta(days=21), 0)))]
        assert resent == [1, 1], "the simulated store needs orders of the last days and of weeks ago"
        con.execute("insert into raw.orders select * from raw.orders where order_id = ?", [f"INC{n}-0-O"])
        # the order that ships today gained an add-on line on the way
        added = con.execute("insert into raw.order_items select order_id, 'P002', 2, 9.50, true from raw.orders "
                            "where shipped_at = ? order by order_id limit 1", [at(day, 2)]).fetchone()[0]
        assert added == 1
        # the loader deletes an order placed by the last load (a test order), with its line
        if n:
            gone = con.execute("delete from raw.orders where order_id = ?", [f"INC{n - 1}-4-O"]).fetchone()[0]
            assert gone == 1 and con.execute("delete from raw.order_items where order_id = ?",
                                             [f"INC{n - 1}-4-O"]).fetchone()[0] == 1
        # an open of a campaign email sent months ago: its goal window is over, its funnel is not
        con.execute("insert into raw.email_events select ?, customer_id, campaign_id, message_id, 'open', ? "
                    "from nextbest.assignments as a where arm = 'treatment' and assigned_at < ? and not exists ("
                    "select 1 from raw.email_events as e where e.campaign_id = a.campaign_id "
                    "and e.customer_id = a.customer_id and e.event_type = 'open') "
                    "order by assignment_id limit 1", [f"INC{n}-old-open", at(day, 5), at(day - timedelta(days=90), 0)])
        # a pause, a late open dated the day before (it arrives with today's load)
        con.execute("insert into raw.portal_events values (?, ?, 'pause', ?, '{}')",
                    [f"INC{n}-pause", busy[0], at(day, 18)])
        con.execute("insert into raw.email_events select ?, customer_id, campaign_id, message_id, 'open', ? "
                    "from raw.email_events where customer_id = ? and event_type = 'sent' and occurred_at < ? "
                    "order by occurred_at desc limit 1",
                    [f"INC{n}-late-open", at(day - timedelta(days=1), 22), busy[1], at(day, 0)])
        # today's state re-synced: a cancellation and a cadence change (each with its dated event)
        con.execute("update raw.subscriptions set status = 'cancelled', cancelled_at = ?, cancel_reason = 'price', "
                    "next_charge_at = null where customer_id = ? and cancelled_at is null", [at(day, 19), churner])
        con.execute("insert into raw.portal_events values (?, ?, 'cancel', ?, '{}')",
                    [f"INC{n}-cancel", churner, at(day, 19)])
        sub_id, days = con.execute("select subscription_id, cadence_days from raw.subscriptions "
                                   "where customer_id = ? and cancelled_at is null", [switcher]).fetchone()
        new_days = 56 if days != 56 else 28
        con.execute("update raw.subscriptions set cadence_days = ? where subscription_id = ?", [new_days, sub_id])
        con.execute("insert into raw.portal_events values (?, ?, 'change_cadence', ?, ?)",
                    [f"INC{n}-cadence", switcher, at(day, 20),
                     json.dumps({"subscription_id": sub_id, "from_days": days, "to_days": new_days})])
        # an older ticket resolved today, rated
        con.execute("update raw.support_tickets set status = 'solved', resolved_at = ?, csat = 5 where ticket_id = "
                    "(select min(ticket_id) from raw.support_tickets where resolved_at is null and created_at < ?)",
                    [at(day, 21), at(day, 0)])
        # new sign-ups whose ids sort into the training sample, pushing others out of it
        cutoff = sorted(md5(r[0]) for r in con.execute("select customer_id from raw.customers").fetchall())[
            VARS["training_customers"] - 1]
        newcomers = [c for c in (f"C-NEW-{n}-{i}" for i in range(200)) if md5(c) < cutoff][:2]
        for customer in newcomers:
            con.execute("insert into raw.customers values (?, ?, 'Ada', ?, 'GB', 'Europe/London', true, 'email')",
                        [customer, f"{customer.lower()}@example.com", at(day, 7)])
            con.execute("insert into raw.portal_events values (?, ?, 'login', ?, '{}')",
                        [f"{customer}-login", customer, at(day, 8)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Friday's training sample, (day, incremental warehouse, full-refresh warehouse) per day,
    and the SQL of the last incremental run per incremental model."""
    wh = new_warehouse(tmp_path_factory, "incremental")
    with duckdb.connect(str(wh.path)) as con:
        simulator.simulate(con, customers=CUSTOMERS, months=6, seed=5, end_date=FRIDAY + timedelta(days=1))
    run(wh, FRIDAY)
    friday_sample = {r["customer_id"] for r in wh.rows("select customer_id from intermediate.int_training_customers")}
    out = []
    for n, day in enumerate(DAYS):
        load_day(wh.path, day, n)
        run(wh, day)
        full = wh.copy(tmp_path_factory, f"full-{day.isoformat()}")
        run(full, day, "--full-refresh")
        out.append((day, wh.copy(tmp_path_factory, f"incremental-{day.isoformat()}"), full))
    compiled = {path.stem: path.read_text()
                for path in (wh.work_dir / "target" / "compiled").rglob("*.sql") if path.stem in INCREMENTAL}
    return friday_sample, out, compiled


@pytest.mark.parametrize("table", TABLES)
def test_incremental_runs_equal_a_full_refresh(runs, table):
    for day, incremental, full in runs[1]:
        expected, got = rows(full, table), rows(incremental, table)
        assert len(got) == len(expected), f"{table} at {day}: {len(got)} rows, a full refresh has {len(expected)}"
        missing, extra = sorted(set(expected) - set(got), key=repr)[:3], sorted(set(got) - set(expected), key=repr)[:3]
        assert got == expected, f"{table} at {day}: differs from a full refresh; missing {missing}, extra {extra}"


def test_a_run_at_an_earlier_as_of_equals_a_full_refresh_of_that_day(runs, tmp_path_factory):
    # Monday again after Tuesday's run (e.g. re-scoring a past day): what Tuesday added
    # (its points, cycles, assignments, carried totals) must go, with the same data loaded.
    # Customers whom Tuesday's sign-ups pushed out of the training sample are back in it on
    # Monday, and their dropped weekly history comes back only with a full refresh: the
    # sampled tables are compared at the scoring point.
    _, days, _ = runs
    (monday, _, _), (_, after_tuesday, _) = days[1], days[2]
    incremental = after_tuesday.copy(tmp_path_factory, "back-to-monday")
    run(incremental, monday)
    full = after_tuesday.copy(tmp_path_factory, "back-to-monday-full")
    run(full, monday, "--full-refresh")
    for table in TABLES:
        where = f"as_of_date = '{monday.isoformat()}'" if table in SAMPLED else "true"
        expected, got = rows(full, table, where), rows(incremental, table, where)
        assert got == expected, f"{table} back at {monday}: {len(got)} rows, a full refresh has {len(expected)}"


def test_a_daily_run_keeps_settled_points_and_recomputes_the_rest(runs, tmp_path_factory):
    _, days, _ = runs
    (monday, after_monday, _), (tuesday, _, _) = days[1], days[2]
    settled = monday - timedelta(days=28)
    wh = after_monday.copy(tmp_path_factory, "marked")
    with duckdb.connect(str(wh.path)) as con:
        # mark a settled weekly point and Monday's scoring point, then run Tuesday
        con.execute("update analytics.customer_features set orders_lifetime = -1 where as_of_date in (?, ?)",
                    [settled, monday])
    load_day(wh.path, tuesday, 2)
    run(wh, tuesday)
    marked = wh.rows("select as_of_date, customer_id from analytics.customer_features where orders_lifetime = -1")
    sample = {r["customer_id"] for r in wh.rows("select customer_id from intermediate.int_training_customers")}
    expected = {r["customer_id"] for r in after_monday.rows(
        "select customer_id from analytics.customer_features where as_of_date = ?", settled)} & sample
    # the settled point was kept (bar customers who left the sample), Monday was recomputed
    assert expected and {r["as_of_date"] for r in marked} == {settled}
    assert {r["customer_id"] for r in marked} == expected


def test_weekly_history_is_the_sample_and_every_customer_is_scored(runs):
    friday_sample, days, _ = runs
    day, incremental, _ = days[-1]
    (counts,) = incremental.rows(f"""
        select
            (select count(distinct customer_id) from analytics.customer_features where not is_scoring_point)
                as weekly_customers,
            (select count(*) from analytics.customer_features where is_scoring_point) as scored,
            (select count(*) from raw.customers where created_at < '{day.isoformat()}') as customers""")
    assert 0 < counts["weekly_customers"] <= VARS["training_customers"] < counts["customers"]
    assert counts["scored"] == counts["customers"]
    # the new sign-ups pushed customers out of the sample: their weekly history is gone
    sample = {r["customer_id"] for r in incremental.rows("select customer_id from intermediate.int_training_customers")}
    assert len(sample) == VARS["training_customers"]
    pushed_out = friday_sample - sample
    assert pushed_out
    weekly = {r["customer_id"] for r in incremental.rows(
        "select distinct customer_id from analytics.customer_features where not is_scoring_point")}
    assert weekly <= sample and not weekly & pushed_out


def test_the_incremental_sql_transpiles_to_snowflake(runs):
    # test_portability compiles a fresh project (full builds); this is the daily run's branch
    _, _, compiled = runs
    assert sorted(compiled) == sorted(INCREMENTAL)
    for model, sql in compiled.items():
        assert f'."{model}"' in sql, f"{model}: not the incremental branch (it reads the model's own table)"
        (snowflake_sql,) = sqlglot.transpile(sql, read="duckdb", write="snowflake", unsupported_level=ErrorLevel.RAISE)
        sqlglot.parse_one(snowflake_sql, read="snowflake")
    # the scoring point's lifetime counters start from the previous run's carried totals
    assert '."int_features_lifetime"' in compiled["int_features_activity"]

"""The demo-store simulator writes the contract, deterministically, with learnable behaviour."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from dagster_project.ingest import contract
from dagster_project.ingest.simulator import DEFAULT_CUSTOMERS, DEFAULT_MONTHS, DEFAULT_SEED, simulate

END = dt.date(2025, 6, 1)
N = 3000
WINDOWS = {"retained_60d": 60, "cadence_changed_30d": 30, "addon_30d": 30, "login_30d": 30, "reactivated_60d": 60}
RAW_TABLES = [f"raw.{t}" for t in contract.LOAD_ORDER]
ALL_TABLES = RAW_TABLES + ["nextbest.assignments", "sim_truth.customer_traits", "sim_truth.uplift"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    con = duckdb.connect(str(tmp_path_factory.mktemp("sim") / "store.duckdb"))
    lines: list[str] = []
    summary = simulate(con, customers=N, months=18, seed=7, end_date=END, progress=lines.append)
    yield con, summary, lines
    con.close()


def q(con, sql):
    return con.execute(sql).fetchall()


def one(con, sql):
    return con.execute(sql).fetchall()[0][0]


def checksums(con) -> dict[str, tuple]:
    return {t: tuple(q(con, f"select count(*), sum(hash(x)) from {t} x")[0]) for t in ALL_TABLES}


def test_defaults_and_summary(store):
    con, summary, lines = store
    assert (DEFAULT_CUSTOMERS, DEFAULT_MONTHS, DEFAULT_SEED) == (8000, 18, 42)
    assert summary.row_counts["raw.customers"] == N
    assert summary.end_date == END and summary.start_date == dt.date(2023, 12, 1)
    assert summary.elapsed_seconds > 0
    assert any(line.startswith("raw.orders: ") for line in lines)


def test_same_seed_identical_other_seed_differs(tmp_path):
    def run(name, seed):
        con = duckdb.connect(str(tmp_path / name))
        simulate(con, customers=800, months=12, seed=seed, end_date=END)
        return checksums(con)

    first, again, other = run("a.duckdb", 1), run("b.duckdb", 1), run("c.duckdb", 2)
    assert first == again
    assert first["raw.orders"] != other["raw.orders"]
    assert first["raw.email_events"] != other["raw.email_events"]


def test_rerun_replaces_contents_and_keeps_quarantine(tmp_path):
    con = duckdb.connect(str(tmp_path / "re.duckdb"))
    simulate(con, customers=300, months=6, seed=3, end_date=END)
    con.execute("insert into raw.raw_quarantine values ('orders', 'x.csv', 1, 'bad', '{}', now())")
    before = checksums(con)
    simulate(con, customers=300, months=6, seed=3, end_date=END)
    assert checksums(con) == before
    assert one(con, "select count(*) from raw.raw_quarantine") == 1


def test_every_contract_table_populated_with_contract_columns(store):
    con, _, _ = store
    for name, table in contract.TABLES.items():
        cols = q(con, f"select column_name, data_type from information_schema.columns "
                      f"where table_schema = 'raw' and table_name = '{name}' order by ordinal_position")
        assert [c[0] for c in cols] == table.column_names, name
        assert [c[1] for c in cols] == [c.type for c in table.columns], name
        assert one(con, f"select count(*) from raw.{name}") > 0, name
        for col in table.columns:
            if col.required:
                assert one(con, f"select count(*) from raw.{name} where {col.name} is null") == 0, (name, col.name)
            if col.accepted:
                allowed = ", ".join(f"'{v}'" for v in col.accepted)
                assert one(con, f"select count(*) from raw.{name} where {col.name} not in ({allowed})") == 0
            if col.min_value is not None:
                assert one(con, f"select count(*) from raw.{name} where {col.name} < {col.min_value}") == 0


def test_keys_unique_and_foreign_keys_resolve(store):
    con, _, _ = store
    for name, table in contract.TABLES.items():
        pk = ", ".join(table.primary_key)
        assert one(con, f"select count(*) - count(distinct ({pk})) from raw.{name}") == 0, name
        for col, (parent, parent_col) in table.foreign_keys.items():
            orphans = one(con, f"select count(*) from raw.{name} c where {col} is not null and not exists "
                               f"(select 1 from raw.{parent} p where p.{parent_col} = c.{col})")
            assert orphans == 0, (name, col)
    assert one(con, "select count(*) - count(distinct assignment_id) from nextbest.assignments") == 0
    assert one(con, "select count(*) from nextbest.assignments a where not exists "
                    "(select 1 from raw.customers c where c.customer_id = a.customer_id)") == 0
    # Each treatment message is a real send with a unique message_id per campaign and customer.
    assert one(con, """select count(*) from nextbest.assignments a where arm = 'treatment' and not exists (
        select 1 from raw.email_events e where e.message_id = a.message_id and e.event_type = 'sent'
        and e.campaign_id = a.campaign_id and e.customer_id = a.customer_id)""") == 0
    assert one(con, "select count(*) from (select message_id from raw.email_events group by 1 "
                    "having count(distinct campaign_id || customer_id) > 1)") == 0


def test_nothing_after_end_and_order_semantics(store):
    con, _, _ = store
    end = f"timestamp '{END}'"
    for table, col in [("orders", "ordered_at"), ("email_events", "occurred_at"), ("portal_events", "occurred_at"),
                       ("support_tickets", "created_at"), ("payments", "attempted_at"), ("orders", "delivered_at")]:
        assert one(con, f"select count(*) from raw.{table} where {col} >= {end}") == 0, table
    assert one(con, "select count(*) from raw.orders where status = 'skipped' and (total <> 0 or shipped_at is not null)") == 0
    assert one(con, "select count(*) from raw.orders where status = 'fulfilled' and total <= 0") == 0
    # One payment per charged order; failed orders have failed payments with a known reason.
    assert one(con, """select count(*) from raw.orders o where status <> 'skipped' and
        (select count(*) from raw.payments p where p.order_id = o.order_id) <> 1""") == 0
    assert one(con, """select count(*) from raw.payments where (status = 'failed') <> (failure_reason is not null)
        or failure_reason not in ('card_declined', 'expired_card', 'insufficient_funds')""") == 0
    assert one(con, """select count(*) from raw.orders o join raw.payments p using (order_id)
        where (o.status = 'failed') <> (p.status = 'failed')""") == 0
    # Every skip is preceded by a portal 'skip' event naming the order.
    assert one(con, """select count(*) from raw.orders o where status = 'skipped' and not exists (
        select 1 from raw.portal_events e where e.event_type = 'skip' and e.occurred_at < o.ordered_at
        and json_extract_string(e.properties, '$.order_id') = o.order_id)""") == 0
    assert one(con, "select count(*) from raw.subscriptions where (status = 'cancelled') <> (cancel_reason is not null)") == 0
    assert one(con, "select count(*) from raw.subscriptions where status <> 'cancelled' and next_charge_at < "
                    f"{end}") == 0


def test_events_fall_inside_customer_and_subscription_lifetimes(store):
    con, _, _ = store
    for table, col in [("orders", "ordered_at"), ("email_events", "occurred_at"), ("portal_events", "occurred_at"),
                       ("support_tickets", "created_at"), ("payments", "attempted_at"), ("subscriptions", "started_at")]:
        early = one(con, f"select count(*) from raw.{table} x join raw.customers c using (customer_id) "
                         f"where x.{col} < c.created_at")
        assert early == 0, table
    assert one(con, """select count(*) from raw.orders o join raw.subscriptions s using (subscription_id)
        where o.ordered_at < s.started_at or o.ordered_at > coalesce(s.cancelled_at, timestamp '2100-01-01')""") == 0
    assert one(con, """select count(*) from raw.portal_events e join raw.subscriptions s
        on s.subscription_id = json_extract_string(e.properties, '$.subscription_id')
        where e.event_type not in ('reactivate', 'cancel', 'cancel_attempt')
        and (e.occurred_at < s.started_at or e.occurred_at > coalesce(s.cancelled_at, timestamp '2100-01-01'))""") == 0


def test_engagement_rates_and_churn_are_plausible(store):
    con, _, _ = store
    sent, opens, clicks = q(con, """select count(*) filter (event_type = 'sent'), count(*) filter (event_type = 'open'),
        count(*) filter (event_type = 'click') from raw.email_events where campaign_id like 'newsletter-%'""")[0]
    assert 0.25 <= opens / sent <= 0.40
    assert 0.02 <= clicks / sent <= 0.05
    rates = [r[0] for r in q(con, f"""
        with months as (select unnest(generate_series(timestamp '2024-01-01', timestamp '2025-05-01', interval 1 month)) as ms)
        select (select count(*) from raw.subscriptions where cancelled_at >= ms and cancelled_at < ms + interval 1 month
                and cancel_reason <> 'upgraded')
             / (select count(*) from raw.subscriptions where started_at < ms and (cancelled_at is null or cancelled_at >= ms))
        from months""")]
    assert all(0.01 <= r <= 0.08 for r in rates), rates
    assert 0.02 <= sum(rates) / len(rates) <= 0.06
    # Support: ~0.1-0.3 tickets per active subscriber a month, with same-topic repeats within 14 days.
    per_month = one(con, "select count(*) from raw.support_tickets") / (
        one(con, "select avg(n) from (select count(*) as n from raw.subscriptions, generate_series(timestamp '2024-01-01', "
                 "timestamp '2025-05-01', interval 1 month) g(ms) where started_at < ms and "
                 "(cancelled_at is null or cancelled_at >= ms) group by ms)") * 18)
    assert 0.1 <= per_month <= 0.35
    assert one(con, """select count(*) from raw.support_tickets a join raw.support_tickets b
        on a.customer_id = b.customer_id and a.topic = b.topic and b.created_at > a.created_at
        and b.created_at <= a.created_at + interval 14 day""") > 20


def test_cadence_mismatch_customers_skip_every_other_order(store):
    con, _, _ = store
    rows = dict(q(con, """select t.cadence_mismatch, avg((o.status = 'skipped')::int)
        from raw.orders o join raw.subscriptions s using (subscription_id)
        join sim_truth.customer_traits t on t.customer_id = o.customer_id
        where t.customer_type = 'subscriber' and not s.is_gift
        and s.cadence_days = t.subscribed_cadence_days group by 1"""))
    assert 0.35 <= rows[True] <= 0.6
    assert rows[False] < 0.08
    # Some of them fix it themselves or leave because of it.
    assert one(con, """select count(*) from raw.portal_events e join sim_truth.customer_traits t using (customer_id)
        where e.event_type = 'change_cadence' and t.cadence_mismatch
        and json_extract(e.properties, '$.to_days')::int = t.preferred_cadence_days""") > 10
    assert one(con, "select count(*) from raw.subscriptions where cancel_reason = 'too_much_coffee'") > 10


def test_add_ons_precede_upgrades(store):
    con, _, _ = store
    upgrades = q(con, """select s.customer_id, min(s.cancelled_at) as up,
        (select min(o.ordered_at) from raw.orders o join raw.order_items i using (order_id)
         where o.customer_id = s.customer_id and i.is_one_time) as first_addon
        from raw.subscriptions s where cancel_reason = 'upgraded' group by 1""")
    assert len(upgrades) >= 10
    assert all(first_addon is not None and first_addon < up for _, up, first_addon in upgrades)
    # Upgrades start the bigger plan the same day.
    assert one(con, """select count(*) from raw.subscriptions s where cancel_reason = 'upgraded' and not exists (
        select 1 from raw.subscriptions n where n.customer_id = s.customer_id and n.started_at >= s.cancelled_at
        and n.started_at < s.cancelled_at + interval 1 day)""") == 0
    appetite_upgraders = one(con, """select avg(addon_appetite) from sim_truth.customer_traits where customer_id in
        (select customer_id from raw.subscriptions where cancel_reason = 'upgraded')""")
    assert appetite_upgraders > one(con, "select avg(addon_appetite) from sim_truth.customer_traits")


def test_engagement_decays_before_churn(store):
    con, _, _ = store
    # Logins per customer-week in the 30 days before cancelling vs 60-120 days before.
    near, far = q(con, """with c as (select customer_id, cancelled_at from raw.subscriptions
            where cancel_reason in ('price', 'taste', 'moving', 'other', 'too_much_coffee')
            and cancelled_at >= timestamp '2024-05-01')
        select count(*) filter (e.occurred_at >= c.cancelled_at - interval 30 day) / 30.0,
               count(*) filter (e.occurred_at between c.cancelled_at - interval 120 day and c.cancelled_at - interval 60 day) / 60.0
        from c join raw.portal_events e on e.customer_id = c.customer_id and e.event_type = 'login'
        and e.occurred_at < c.cancelled_at""")[0]
    assert near < 0.6 * far


def _outcomes(con):
    """Per assignment (goal window closed before the end): arm, goal reached, true uplift, pre-period features."""
    goal_sql = {
        "retained_60d": """exists (select 1 from raw.subscriptions s where s.customer_id = a.customer_id
            and s.started_at <= a.assigned_at + interval 60 day
            and (s.cancelled_at is null or s.cancelled_at > a.assigned_at + interval 60 day))""",
        "cadence_changed_30d": """exists (select 1 from raw.portal_events e where e.customer_id = a.customer_id
            and e.event_type = 'change_cadence' and e.occurred_at > a.assigned_at
            and e.occurred_at <= a.assigned_at + interval 30 day)""",
        "addon_30d": """exists (select 1 from raw.orders o join raw.order_items i using (order_id)
            where o.customer_id = a.customer_id and i.is_one_time and o.ordered_at > a.assigned_at
            and o.ordered_at <= a.assigned_at + interval 30 day)""",
        "login_30d": """exists (select 1 from raw.portal_events e where e.customer_id = a.customer_id
            and e.event_type = 'login' and e.occurred_at > a.assigned_at
            and e.occurred_at <= a.assigned_at + interval 30 day)""",
        "reactivated_60d": """exists (select 1 from raw.subscriptions s where s.customer_id = a.customer_id
            and s.started_at > a.assigned_at and s.started_at <= a.assigned_at + interval 60 day)""",
    }
    outcome = "case u.goal " + " ".join(f"when '{g}' then {sql}" for g, sql in goal_sql.items()) + " end"
    windows = "case u.goal " + " ".join(f"when '{g}' then {d}" for g, d in WINDOWS.items()) + " end"
    return con.execute(f"""
        select a.playbook_id, a.arm = 'treatment' as treated, ({outcome})::int as y, u.true_uplift,
            (select count(*) from raw.orders o where o.customer_id = a.customer_id and o.ordered_at < a.assigned_at) as pre_orders,
            date_diff('day', c.created_at, a.assigned_at) as tenure
        from nextbest.assignments a
        join sim_truth.uplift u on u.customer_id = a.customer_id and u.playbook_id = a.playbook_id
        join raw.customers c on c.customer_id = a.customer_id
        where a.assigned_at + to_days({windows}) < timestamp '{END}'
    """).df()


@pytest.fixture(scope="module")
def outcomes(store):
    return _outcomes(store[0])


def test_all_playbooks_ran_with_randomized_holdouts(store, outcomes):
    con, _, _ = store
    assert set(outcomes.playbook_id) == set(contract.PLAYBOOKS)
    share = one(con, "select avg((arm = 'holdout')::int) from nextbest.assignments")
    assert abs(share - 0.2) < 0.01
    assert one(con, "select count(*) from nextbest.assignments where (arm = 'treatment') <> (message_id is not null)") == 0
    # Holdout is independent of the latent traits.
    gap = one(con, """select abs(avg(t.price_sensitivity) filter (arm = 'treatment')
        - avg(t.price_sensitivity) filter (arm = 'holdout')) from nextbest.assignments a join sim_truth.customer_traits t using (customer_id)""")
    assert gap < 0.03


def _smd(df, col):
    """Standardized mean difference of `col` between arms, and its standard error under randomization."""
    t, h = df[df.treated][col], df[~df.treated][col]
    pooled = ((t.var() + h.var()) / 2) ** 0.5
    smd = abs(t.mean() - h.mean()) / pooled if pooled > 0 else 0.0
    return smd, (1 / len(t) + 1 / len(h)) ** 0.5


def test_arms_balanced_on_pre_period_features(outcomes):
    for col in ("pre_orders", "tenure"):
        assert _smd(outcomes, col)[0] < 0.1, col
        for playbook, df in outcomes.groupby("playbook_id"):
            smd, se = _smd(df, col)
            # < 0.1 once a playbook has enough rows for 0.1 to be far outside chance; never beyond chance.
            assert smd < (0.1 if 3.5 * se <= 0.1 else 3.5 * se), (playbook, col, smd, se)


def test_uplift_is_learnable_from_raw_data(outcomes):
    pos = outcomes[outcomes.true_uplift > 0]
    observed = pos[pos.treated].y.mean() - pos[~pos.treated].y.mean()
    assert observed > 0.05
    assert abs(observed - pos.true_uplift.mean()) < 0.06
    # The big, heterogeneous effects show up playbook by playbook too.
    for playbook, df in pos.groupby("playbook_id"):
        if (~df.treated).sum() >= 150 and df.true_uplift.mean() >= 0.1:
            diff = df[df.treated].y.mean() - df[~df.treated].y.mean()
            assert diff > 0.03, playbook
    # Heterogeneity is visible: strong responders lift far more than weak ones and sleeping dogs.
    def lift(df):
        return df[df.treated].y.mean() - df[~df.treated].y.mean()

    strong, weak = outcomes[outcomes.true_uplift >= 0.2], outcomes[outcomes.true_uplift <= 0.05]
    assert (outcomes.true_uplift < 0).sum() > 100
    assert lift(strong) > lift(weak) + 0.1

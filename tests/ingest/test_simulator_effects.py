"""The simulator's planted effects: heterogeneous, sometimes negative, visible in the data, and explored
beyond the rule audiences so a model can learn them for every live subscriber."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pytest

from dagster_project.ingest.simulator import simulate
from dagster_project.ingest.simulator.campaigns import EXPLORED
from dagster_project.ingest.simulator.traits import DOG_EFFECT, DOG_ENGAGEMENT

END = dt.date(2025, 6, 1)


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    con = duckdb.connect(str(tmp_path_factory.mktemp("effects") / "store.duckdb"))
    simulate(con, customers=6000, months=18, seed=21, end_date=END)
    yield con
    con.close()


@pytest.fixture(scope="module")
def sends(con):
    """Assignments whose goal window closed, with arm, goal reached (raw data), traits and true uplift."""
    return con.execute(f"""
        select a.playbook_id, a.arm = 'treatment' as treated, u.true_uplift, t.price_sensitivity,
            t.engagement, t.cadence_mismatch, t.sleeping_dog,
            case u.goal
              when 'retained_60d' then (not exists (select 1 from raw.subscriptions s
                  where s.customer_id = a.customer_id and s.cancelled_at > a.assigned_at
                  and s.cancelled_at <= a.assigned_at + interval 60 day and s.cancel_reason <> 'upgraded'))::int
              when 'cadence_changed_30d' then (exists (select 1 from raw.portal_events e
                  where e.customer_id = a.customer_id and e.event_type = 'change_cadence'
                  and e.occurred_at > a.assigned_at and e.occurred_at <= a.assigned_at + interval 30 day))::int
            end as y
        from nextbest.assignments a
        join sim_truth.uplift u using (customer_id, playbook_id)
        join sim_truth.customer_traits t using (customer_id)
        where a.playbook_id in ('at_risk_save', 'cadence_mismatch')
          and a.assigned_at + interval 60 day < timestamp '{END}'""").df()


def lift(frame) -> float:
    return frame.loc[frame.treated, "y"].mean() - frame.loc[~frame.treated, "y"].mean()


def test_broad_playbooks_also_go_to_customers_outside_their_rule(sends):
    cadence = sends[sends.playbook_id == "cadence_mismatch"]
    # The rule picks skippers (mostly mismatch customers); exploration sends it to everyone live.
    assert (~cadence.cadence_mismatch).mean() > 0.3
    assert set(EXPLORED) >= {"at_risk_save", "cadence_mismatch", "expansion", "re_engagement"}


def test_the_same_playbook_moves_some_customers_and_not_others(sends):
    cadence = sends[sends.playbook_id == "cadence_mismatch"]
    assert lift(cadence[cadence.cadence_mismatch]) > 0.3 > 0.05 > lift(cadence[~cadence.cadence_mismatch])
    save = sends[sends.playbook_id == "at_risk_save"]
    deal_seekers, loyal = save[save.price_sensitivity > 0.55], save[save.price_sensitivity < 0.25]
    # A discount keeps deal seekers and does nothing good for loyal full-price buyers.
    assert save.loc[save.price_sensitivity < 0.15, "true_uplift"].max() < 0
    assert lift(deal_seekers) > lift(loyal) + 0.05
    assert lift(loyal) < 0.03


def test_sleeping_dogs_are_the_least_engaged_and_a_message_backfires(con):
    traits = con.execute("select engagement, sleeping_dog from sim_truth.customer_traits").df()
    assert (traits.loc[traits.sleeping_dog, "engagement"] < DOG_ENGAGEMENT).all()
    assert (traits.loc[~traits.sleeping_dog, "engagement"] >= DOG_ENGAGEMENT).all()
    assert 0.03 < traits.sleeping_dog.mean() < 0.1
    dogs = con.execute("""select distinct u.playbook_id, u.true_uplift from sim_truth.uplift u
        join sim_truth.customer_traits t using (customer_id) where t.sleeping_dog""").df()
    assert set(dogs.loc[dogs.playbook_id != "cadence_mismatch", "true_uplift"]) == {DOG_EFFECT}


def test_price_sensitivity_shows_in_the_discount_codes_customers_use(con):
    codes = con.execute("""
        select t.price_sensitivity > 0.55 as deal_seeker,
            avg(coalesce(d.brew, 0)) as newsletter_codes, avg(s.price) as subscription_price
        from sim_truth.customer_traits t
        join raw.subscriptions s using (customer_id)
        left join (select customer_id, count(*) as brew from raw.orders where discount_code = 'BREW10'
                   group by 1) d using (customer_id)
        where t.customer_type = 'subscriber' group by 1 order by 1""").df().set_index("deal_seeker")
    assert codes.at[True, "newsletter_codes"] > 3 * codes.at[False, "newsletter_codes"]
    assert codes.at[True, "subscription_price"] < codes.at[False, "subscription_price"]


def test_retention_outcomes_follow_the_natural_course_in_the_holdout(sends):
    # Without a message a customer is kept unless a churn was scheduled: the holdout keeps most.
    save = sends[(sends.playbook_id == "at_risk_save") & ~sends.treated]
    assert 0.8 < save.y.mean() < 0.97
    assert np.isfinite(save.true_uplift).all()

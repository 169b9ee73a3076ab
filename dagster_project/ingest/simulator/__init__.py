"""The demo-store simulator: a subscription coffee shop with customers who behave for a reason.

    from dagster_project.ingest.simulator import simulate, SimulationSummary
    summary = simulate(con, customers=8000, months=18, seed=42, end_date=None, progress=print)

`simulate` (re)creates the `raw.*` contract tables (`contract.py`) and replaces
their contents, plus `nextbest.assignments` and `sim_truth.*`; it leaves
`raw.raw_quarantine` alone. The history covers `months` calendar months
ending at `end_date` 00:00 UTC (default: today, UTC); nothing happens after it.

Model
-----
* Latent traits per customer (`traits.py`, written to `sim_truth.customer_traits`):
  baseline engagement, monthly churn hazard, subscribed vs preferred cadence
  (~13% of subscribers drink at half their cadence), add-on appetite, price
  sensitivity, gift recipient (~5%), support-ticket style (brief / warm),
  payment-failure propensity, "sleeping dog" (outreach backfires: the least
  engaged), opt-in. Price sensitivity shows: the price-sensitive pick cheaper
  coffees and smaller plans, sign up with a welcome code and use the
  newsletter's 10%-off code more often.
  15% of customers are one-time buyers without a subscription.
* Time advances one week at a time; every stage updates all customers at once
  with numpy (no per-customer or per-event Python loops). A 40% cohort signed
  up before the window; the rest sign up through it at a growing rate.
* Churn is a latent scheduled day drawn from the hazard; opens and logins fade
  over the ~75 days before it, so falling engagement predicts churn. Reasons
  follow traits and state (mismatch -> too_much_coffee, price-sensitive ->
  price, repeated failed payments -> payment_failed). Some churned customers
  reactivate; gift subscriptions end after 3 or 6 deliveries ('gift_ended').
* Orders: one per cycle (`orders.py`): skipped (mismatch customers skip about
  every other cycle until they change cadence), failed payment, fulfilled or
  rarely refunded; add-ons precede plan upgrades. Newsletter every 14 days,
  portal events, and support tickets (~0.2 per active customer a month, 15%
  followed by a repeat contact on the same topic) come from `engagement.py`,
  `subscriptions.py` and `support.py`.
* Past campaigns (`campaigns.py`): every four weeks each of the seven
  playbooks picks an audience by an observable rule, and half of the other
  reachable live subscribers get one of the five playbooks whose brief audience
  is every live subscriber, at random (exploration); each audience holds out a
  random 20% (`nextbest.assignments`); rounds start once 13 weeks of history
  exist, so very short windows have no campaigns. Each customer's true response
  (`sim_truth.uplift`: customer, playbook, goal, true_uplift) is a function of
  traits, heterogeneous and sometimes negative (docs/SHARED_SEMANTICS.md lists
  the planted effects); the goal happens with probability p0 (holdout) or
  p0 + uplift (treatment), p0 being the customer's own rate without a message
  (for retention: kept unless a churn is scheduled inside the window), and the
  raw data is made to show it, so the treatment-vs-holdout difference recovers
  the uplift. Goals and windows are in `traits.GOALS` (retained_60d,
  cadence_changed_30d, addon_30d, login_30d, reactivated_60d).

Determinism: one `numpy.random.default_rng(seed)` drives everything in a fixed
order and ids are allocated sequentially, so the same arguments (including
`end_date`) produce identical tables.
"""

from .engine import DEFAULT_CUSTOMERS, DEFAULT_MONTHS, DEFAULT_SEED, SimulationSummary, simulate
from .writer import drop_pipeline_state, pipeline_tables

__all__ = ["simulate", "SimulationSummary", "DEFAULT_CUSTOMERS", "DEFAULT_MONTHS", "DEFAULT_SEED",
           "drop_pipeline_state", "pipeline_tables"]

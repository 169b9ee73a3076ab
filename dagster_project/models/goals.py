"""What a playbook's messages aim for: its goal, and the days after a send in which the goal counts.

The uplift models learn each playbook's effect on its goal (`uplift_data.py` reads whether it
happened from raw.*), and routing values a send by what the goal is worth (`decisioning/routing.py`).
A brief names its goal (`goal:`); the seed playbooks may leave it out and get theirs below.
"""

# goal -> the days after a send in which it counts
GOAL_WINDOWS = {
    "retained_60d": 60,  # no subscription cancelled (other than to upgrade)
    "cadence_changed_30d": 30,  # changed their delivery cadence in the portal
    "addon_30d": 30,  # added a one-time item
    "login_30d": 30,  # logged in to the portal
    "reactivated_60d": 60,  # reactivated, or started a new subscription
}
# The seed playbooks' goals (the same table as the simulator's `traits.GOALS`).
SEED_GOALS = {
    "at_risk_save": "retained_60d",
    "cadence_mismatch": "cadence_changed_30d",
    "expansion": "addon_30d",
    "onboarding": "retained_60d",
    "re_engagement": "login_30d",
    "win_back": "reactivated_60d",
    "high_ltv_recovery": "retained_60d",
}

# What dbt's `int_campaign_outcomes` calls each goal (var `campaign_goals`: {playbook: {goal, window_days}}).
DBT_GOAL_KINDS = {
    "retained_60d": "retained",
    "cadence_changed_30d": "cadence_changed",
    "addon_30d": "addon",
    "login_30d": "login",
    "reactivated_60d": "reactivated",
}
# Save offers are not routed playbooks; `campaign_performance` measures them as dbt's default does.
SAVE_OFFER_GOAL = {"save_offer": {"goal": "retained", "window_days": 30}}


def campaign_goals_var(goals: dict[str, str]) -> dict[str, dict]:
    """dbt's var `campaign_goals` for playbooks with these goals, so `campaign_performance` measures
    each playbook (a new one too) against the goal its brief names."""
    return {**{playbook: {"goal": DBT_GOAL_KINDS[goal], "window_days": GOAL_WINDOWS[goal]}
               for playbook, goal in sorted(goals.items())}, **SAVE_OFFER_GOAL}

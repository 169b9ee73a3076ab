"""The agent view: one customer's `analytics.customer_service_context` row, readable at a glance.

The readers take a warehouse resource (DuckDB or Snowflake), a session of one, or a DuckDB
connection (the CLI's), and speak SQL both engines run. Steps that touch every customer read
the mart a customer-id range at a time (`context_chunks`, `read_context_chunk`); the agent view
reads one customer by id. `render_agent_view` is pure (a row and, optionally, the customer's
latest save-offer recommendation and predictions in, text out). The view is for agents: it
shows tags, tiers and predictions (churn risk, 12-month CLV, next order date) the customer
never sees in a message. Predictions are read on their own (`load_predictions`), never into
the service-context rows that reply drafts are built from.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Iterable, Sequence

import pandas as pd

from dagster_project.messaging.context_pack import IDS_PER_QUERY, plain_records
from dagster_project.resources.warehouse import (IN_CHUNK, KeyRange, WarehouseInterface, column_names, session_on,
                                                 table_exists)

SERVICE_CONTEXT = "analytics.customer_service_context"
TICKET_TOPICS_SHORT = {"delivery_delay": "late delivery", "damaged_package": "damaged package",
                       "payment_issue": "payment problem", "change_address": "address change",
                       "product_question": "product question", "grind_preference": "grind preference",
                       "cancel_request": "cancellation"}


def require_service_context(source) -> None:
    """Raise a RuntimeError saying what to run when the mart is not built yet."""
    if not table_exists(source, SERVICE_CONTEXT):
        raise RuntimeError(f"{SERVICE_CONTEXT} does not exist yet; build the dbt marts first (`nextbest demo`)")


def context_chunks(warehouse: WarehouseInterface, batch_rows: int, where: str = "",
                   params: Sequence[Any] = (), limit: int | None = None) -> list[KeyRange]:
    """Ranges of `batch_rows` customer ids of the mart (those `where` keeps: SQL on its columns; the
    first `limit` of them when given)."""
    require_service_context(warehouse)
    condition = f"where {where}" if where else ""
    first = f" limit {int(limit)}" if limit else ""  # spliced as a number: Snowflake binds no limit
    return warehouse.key_ranges(f"select customer_id from {SERVICE_CONTEXT} {condition} order by customer_id{first}",
                                batch_rows, list(params))


def context_columns(source, wanted: Iterable[str]) -> list[str]:
    """Those of `wanted` the mart has (customer_id first): a mart built before a column existed still reads."""
    with session_on(source) as tx:
        have = set(column_names(tx, SERVICE_CONTEXT))
    return ["customer_id", *[c for c in wanted if c in have and c != "customer_id"]]


def read_context_chunk(source, chunk: KeyRange, columns: Sequence[str] | None = None, where: str = "",
                       params: Sequence[Any] = ()) -> pd.DataFrame:
    """The mart's rows of one chunk of customers (all columns, or `columns`), ordered by customer_id."""
    selected = ", ".join(columns) if columns else "*"
    extra = f" and ({where})" if where else ""
    with session_on(source) as tx:
        return tx.read_df(f"select {selected} from {SERVICE_CONTEXT} where {IN_CHUNK}{extra} order by customer_id",
                          [chunk.first, chunk.last, *params])


def context_rows(frame: pd.DataFrame) -> dict[str, dict]:
    """customer_id -> their row as plain values (None for blanks), the same from either engine."""
    return {r["customer_id"]: r for r in plain_records(frame)}


def load_service_context(source, customer_ids: Iterable[str]) -> dict[str, dict]:
    """customer_id -> their `customer_service_context` row, for these customers (read a thousand ids at a time)."""
    require_service_context(source)
    ids = sorted({str(c) for c in customer_ids})
    rows: dict[str, dict] = {}
    with session_on(source) as tx:
        for start in range(0, len(ids), IDS_PER_QUERY):
            group = ids[start:start + IDS_PER_QUERY]
            rows.update(context_rows(tx.read_df(
                f"select * from {SERVICE_CONTEXT} where customer_id in ({', '.join('?' * len(group))})", group)))
    return rows


def _latest(source, table: str, customer_id: str, order: str) -> dict | None:
    with session_on(source) as tx:
        frame = tx.read_df(f"select * from {table} where customer_id = ? order by {order} limit 1", [customer_id])
    return plain_records(frame)[0] if len(frame) else None


def latest_save_recommendation(source, customer_id: str) -> dict | None:
    """The customer's latest save-offer recommendation, if the save flow has run."""
    from dagster_project.service.save_offers import RECOMMENDATIONS

    if not table_exists(source, RECOMMENDATIONS):
        return None
    return _latest(source, RECOMMENDATIONS, customer_id, "triggered_at desc, recommendation_id desc")


def customers_like(source, customer_id: str) -> list[str]:
    """Customer ids that differ from `customer_id` only in case or surrounding spaces (a typed `c00000042`)."""
    with session_on(source) as tx:
        frame = tx.read_df(f"select customer_id from {SERVICE_CONTEXT} where lower(customer_id) = lower(?) "
                           "order by customer_id limit 3", [customer_id.strip()])
    return [str(c) for c in frame["customer_id"]]


# Written by the customer_scores asset (models/propensity_assets.py).
SCORES = "nextbest.customer_scores"
# Written by the service_reply_drafts asset (service/assets.py).
REPLY_DRAFTS = "nextbest.service_reply_drafts"


def latest_reply_drafts(source, customer_id: str) -> list[dict]:
    """The customer's reply drafts of the newest day that has any (one per open ticket), by ticket."""
    if not table_exists(source, REPLY_DRAFTS):
        return []
    with session_on(source) as tx:
        frame = tx.read_df(f"""select ticket_id, subject, body, status, block_reason, as_of from {REPLY_DRAFTS}
                               where customer_id = ? and as_of = (select max(as_of) from {REPLY_DRAFTS}
                                                                  where customer_id = ?)
                               order by ticket_id""", [customer_id, customer_id])
    return plain_records(frame)


def render_reply_drafts(drafts: list[dict]) -> str:
    """The reply drafts as an agent reads them under the view: ticket, status, subject and body (or why blocked)."""
    lines = ["", f"Reply drafts ({_fmt(drafts[0]['as_of'])}), to check before sending from the helpdesk"]
    for d in drafts:
        lines.append(f"  {d['ticket_id']} · {d['status']}" + (f" · {d['block_reason']}" if d.get("block_reason") else ""))
        if d.get("status") != "blocked":
            lines.append(f"    Subject: {d['subject']}")
            lines += [f"    {line}" if line else "" for line in str(d["body"]).splitlines()]
    return "\n".join(lines)


def load_predictions(source, customer_id: str) -> dict | None:
    """The customer's `nextbest.customer_predictions` row, or None before the predictions exist (or without orders)."""
    from dagster_project.models.clv_assets import PREDICTIONS_TABLE

    if not table_exists(source, PREDICTIONS_TABLE):
        return None
    found = _latest(source, PREDICTIONS_TABLE, customer_id, "as_of_date desc")
    if found is not None and table_exists(source, SCORES):
        # The churn propensity model reads behaviour (cancel attempts, skips, engagement), which the order
        # pattern behind `churn_risk` does not: an agent sees both.
        scores = _latest(source, SCORES, customer_id, "as_of_date desc")
        found["p_churn_30d"] = None if scores is None else scores.get("p_churn")
    return found


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def store_currency(folder=None) -> str:
    """The store's currency symbol: the brand voice's (`brand_voice.yaml` of the briefs folder), the one
    every message prints prices in. Raises BriefError naming the file when it does not read."""
    from dagster_project.messaging.briefs import BRAND_VOICE_FILE, BrandVoice, BriefError, briefs_folder, parse_yaml

    path = briefs_folder(folder) / BRAND_VOICE_FILE
    if not path.exists():
        raise BriefError(f"{path}: missing; the agent view shows money in the brand voice's currency_symbol")
    return parse_yaml(path, BrandVoice).currency_symbol  # type: ignore[attr-defined]


def _money(value: Any, currency: str = "$") -> str:
    return "-" if value is None else f"{currency}{float(value):,.2f}"


def _prediction_line(p: dict, currency: str = "$", status: str | None = None) -> str:
    """Churn risk band, predicted 12-month CLV and expected next order date, for the agent only."""
    risk = (f"churn risk {p.get('churn_risk_band') or '-'}"
            + (f" ({p['churn_risk']:.0%} chance of no order in 90 days)" if p.get("churn_risk") is not None else ""))
    clv = f"predicted 12-month CLV {_money(p.get('predicted_clv_12m'), currency)}"
    if p.get("predicted_clv_12m_low") is not None and p.get("predicted_clv_12m_high") is not None:
        clv += (f" ({_money(p['predicted_clv_12m_low'], currency)}-"
                f"{_money(p['predicted_clv_12m_high'], currency)})")
    behaviour = (f" · churn propensity {p['p_churn_30d']:.0%} in 30 days (from their behaviour)"
                 if p.get("p_churn_30d") is not None else "")
    return (f"  Predicted: {risk}{behaviour} · {clv} · {_next_order(p, status)}"
            f" · confidence {p.get('confidence') or '-'}")


def _next_order(p: dict, status: str | None) -> str:
    """The expected next order in words that fit the subscription: none is due while paused, and for a
    customer without a live subscription it is the model's guess at a return, not a delivery."""
    when = _fmt(p.get("expected_next_order_date"))
    if status == "paused":
        return f"next order: none while paused (the model expects one around {when})"
    if status != "active":
        return f"next order, if they come back: around {when}"
    return f"next order expected {when}"


def _plural(n: Any, word: str) -> str:
    n = int(n or 0)
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_agent_view(row: dict, save: dict | None = None, predictions: dict | None = None,
                      currency: str = "$") -> str:
    """The agent view as plain text: who, value, predictions, subscription, orders, payments, tickets, save offer.
    Money in `currency`, the store's symbol (`store_currency`)."""
    r = row
    name = r.get("first_name") or "(no first name)"
    tags = r.get("tags_text") or "none"
    tenure_years = (r.get("tenure_months") or 0) // 12
    tenure = f"{tenure_years} yr {(r.get('tenure_months') or 0) % 12} mo" if tenure_years else \
        f"{r.get('tenure_months') or 0} mo"
    lines = [
        f"{name} · {r['customer_id']} · as of {_fmt(r.get('as_of_date'))}",
        f"  Customer for {tenure} (since {_fmt(r.get('created_at'))}) · tenure tier {r.get('tenure_tier')}",
        f"  Lifetime value {_money(r.get('lifetime_value'), currency)}"
        f" over {_plural(r.get('lifetime_fulfilled_orders'), 'order')}"
        f" · value tier {r.get('lifetime_value_tier')} · tags: {tags}",
        f"  Prefers {r.get('channel_preference') or 'email'} · writes {r.get('tone_preference') or 'unknown'}",
    ]
    if predictions:
        lines.insert(3, _prediction_line(predictions, currency, r.get("subscription_status")
                                         if r.get("subscription_id") else None))
        if r.get("recent_cancel_attempts") and predictions.get("p_churn_30d") is None:
            lines.insert(4, "  (the churn risk above is from their order pattern: it does not see the cancel attempt)")
    lines += ["", "Subscription"]
    if r.get("subscription_id"):
        lines.append(f"  {r.get('subscription_product_name') or r.get('subscription_product_id')} · "
                     f"{r.get('plan')} · every {r.get('cadence_days')} days · "
                     f"{_money(r.get('subscription_price'), currency)} · {r.get('subscription_status')}")
        lines.append(f"  Next charge: {_fmt(r.get('next_charge_date'))}")
        if r.get("recent_cycles"):
            lines.append(f"  Skipped {r.get('recent_cycle_skips') or 0} of the last {r.get('recent_cycles')} deliveries"
                         f" ({r.get('consecutive_skips') or 0} in a row now)")
    else:
        lines.append("  Never subscribed")
    lines.append(f"  History ({r.get('subscriptions_total') or 0}): {_fmt(r.get('subscription_history'))}")
    if r.get("recent_cancel_attempts"):
        lines.append(f"  Cancel attempts in the portal recently: {r.get('recent_cancel_attempts')}")
    lines += ["", "Orders"]
    for order in str(r.get("recent_orders") or "").split("; "):
        if order:
            lines.append(f"  {order}")
    if not r.get("recent_orders"):
        lines.append("  none yet")
    lines += ["", "Payments",
              f"  {r.get('payment_health')} · failed in the last 90 days: {r.get('failed_payments_last_90d') or 0}"
              + (f" · last failure {_fmt(r.get('last_payment_failure_date'))} "
                 f"({r.get('last_payment_failure_reason') or 'no reason given'})"
                 if r.get("last_payment_failure_date") else "")]
    lines += ["", "Support (email / chat / phone)",
              f"  {_plural(r.get('tickets_total'), 'ticket')}: {r.get('email_tickets') or 0} email, "
              f"{r.get('chat_tickets') or 0} chat, {r.get('phone_tickets') or 0} phone"
              + (f" · average CSAT {r['avg_csat']:.1f}" if r.get("avg_csat") is not None else "")]
    if r.get("open_tickets"):
        lines.append(f"  OPEN ({r.get('open_tickets')}): {r.get('open_ticket_ids')} · {r.get('open_ticket_topics')}")
    if r.get("has_repeat_issue"):
        lines.append(f"  REPEAT ISSUE: {TICKET_TOPICS_SHORT.get(r.get('repeat_issue_topic'), r.get('repeat_issue_topic'))}"
                     f" ({_plural(r.get('repeat_issues_in_lookback'), 'repeat contact')}: {r.get('repeat_issue_topics')})")
    for ticket in str(r.get("ticket_history") or "").split("; "):
        if ticket:
            lines.append(f"  {ticket}")
    if save:
        lines += ["", f"Save offer ({save['arm']}, {save['trigger_kind'].replace('_', ' ')} on "
                      f"{_fmt(save['triggered_at'])})"]
        if save["arm"] == "holdout":
            lines.append("  Holdout: standard cancel flow, no offer (this measures the save rate).")
        else:
            options = {o["id"]: o for o in json.loads(save["allowed_options"])}
            chosen = options.get(save["option_id"], {})
            lines.append(f"  Recommended: {save['option_id']} ({chosen.get('label') or save['option_id']}) - "
                         f"{save['reason']}")
            others = [f"{o['id']} ({o.get('label') or o['id']})" for i, o in options.items() if i != save["option_id"]]
            lines.append(f"  Agent may instead offer: {', '.join(others) or 'nothing else'}")
            lines.append(f"  Log what you offered: nextbest save-offer-choice --recommendation "
                         f"{save['recommendation_id']} --option ID --agent YOU")
    return "\n".join(lines)

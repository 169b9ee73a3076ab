"""Rounds as the sender plans them: the ends of many rounds are read from three narrow columns, each
round then reads only the rows between its ends, so a round costs what its own rows cost. Rows that
change in between (superseded, sent) are not sent from a stale plan, and rows a round leaves out
(one per customer) still go out in the same run."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd

from dagster_project.delivery import outbox
from dagster_project.delivery.esp import CustomerIoEsp, FileEsp, WebhookEsp
from dagster_project.delivery.outbox import due_messages, due_rounds, enqueue_batch, send_id_for, state_counts
from dagster_project.delivery.policy import SendPolicy
from dagster_project.delivery.sender import default_chunk_size, run_export
from tests.delivery.conftest import drafts, noon_utc, ticking_noon

EARLIER = noon_utc() - timedelta(hours=1)
HELPDESK = {"kind": "properties", "destination": "helpdesk"}


def updates(batch_id: str, customer_ids, **props) -> pd.DataFrame:
    body = json.dumps({"nextbest_at_risk": True, **props}, sort_keys=True)
    return pd.DataFrame({"batch_id": batch_id, "customer_id": list(customer_ids), "playbook_id": "service_helpdesk",
                         "body": body})


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rounds_read_between_their_ends_cover_every_due_row_once_across_due_times(warehouse):
    # Two batches queued a minute apart: the second round starts in one and ends in the other.
    enqueue_batch(warehouse, "p1", updates("p1", [f"c{i}" for i in range(7)]), now=EARLIER - timedelta(minutes=1),
                  **HELPDESK)
    enqueue_batch(warehouse, "p2", updates("p2", [f"c{i}" for i in range(7, 10)]), now=EARLIER, **HELPDESK)
    ends = due_rounds(warehouse, noon_utc(), 100, 4, **HELPDESK)
    assert list(ends.columns) == list(outbox.ROUND_END) and len(ends) == 3  # the 4th, 8th and 10th row
    rounds, after = [], None
    for end in ends.itertuples(index=False):
        rows = due_messages(warehouse, noon_utc(), after, tuple(end), 4, noon_utc(), **HELPDESK)
        rounds.append(list(rows["customer_id"]))
        after = tuple(end)
    assert rounds == [["c0", "c1", "c2", "c3"], ["c4", "c5", "c6", "c7"], ["c8", "c9"]]
    assert len(due_rounds(warehouse, noon_utc(), 6, 4, **HELPDESK)) == 2  # plans only as many rows as asked


def test_a_row_superseded_after_its_round_was_planned_is_not_sent(warehouse, tmp_path):
    path = tmp_path / "helpdesk.jsonl"
    enqueue_batch(warehouse, "p1", updates("p1", [f"c{i}" for i in range(6)], nextbest_plan="single"),
                  now=EARLIER, **HELPDESK)

    class SupersedeMidRun:
        """The file sink; while the first round is being sent, a newer update for c5 is queued."""

        def __init__(self, sink: FileEsp):
            self.sink, self.queued = sink, False

        def update_profiles(self, round_updates):
            if not self.queued:
                self.queued = True
                enqueue_batch(warehouse, "p2", updates("p2", ["c5"], nextbest_plan="double"), now=EARLIER,
                              **HELPDESK)
            return self.sink.update_profiles(round_updates)

        def __getattr__(self, name):
            return getattr(self.sink, name)

    # Rounds of two: c5's first update sits in the third round, planned before the newer one was queued.
    summary = run_export(warehouse, SupersedeMidRun(FileEsp(path=str(path))), workers=1, chunk_size=2,
                         clock=ticking_noon(), **HELPDESK)
    written = {line["customer_id"]: line for line in lines(path)}
    assert len(lines(path)) == 6 and summary.sent == 6
    assert written["c5"]["properties"]["nextbest_plan"] == "double"
    old = send_id_for("p1", "c5", "service_helpdesk", updates("p1", ["c5"], nextbest_plan="single")["body"][0])
    assert warehouse.read_df("select state from nextbest.outbox where send_id = ?", [old])["state"][0] == "superseded"
    counts = state_counts(warehouse)
    assert (counts["sent"], counts["superseded"], counts["queued"]) == (6, 1, 0)


def test_rows_a_round_leaves_out_for_being_a_customers_second_go_out_in_the_same_run(warehouse, tmp_path):
    path = tmp_path / "esp.jsonl"
    customers = ["c1", "c2", "c3"]
    enqueue_batch(warehouse, "b1", drafts("b1", customers, "at_risk_save"), now=EARLIER)
    enqueue_batch(warehouse, "b2", drafts("b2", customers, "expansion"), now=EARLIER)
    summary = run_export(warehouse, FileEsp(path=str(path)), chunk_size=10, clock=ticking_noon(),
                         policy=SendPolicy(max_sends_per_customer=10))
    sent = [line["send_id"] for line in lines(path)]
    assert summary.sent == 6 and len(sent) == len(set(sent)) == 6
    # One message per customer per round: each customer's two were claimed in different rounds.
    claims = warehouse.read_df("select customer_id, count(distinct claimed_at) as rounds from nextbest.outbox "
                               "group by customer_id")
    assert set(claims["rounds"]) == {2}


def test_settling_touches_only_rows_the_run_still_holds(warehouse):
    enqueue_batch(warehouse, "b1", drafts("b1", ["c1", "c2"]), now=EARLIER)
    ids = list(warehouse.read_df("select send_id from nextbest.outbox order by customer_id")["send_id"])
    with warehouse.transaction() as tx:
        outbox.claim(tx, ids, "run-a", noon_utc(), "file")
    outcome = pd.DataFrame({"send_id": ids, "state": "sent", "last_error": None, "next_attempt_at": None,
                            "sent_at": outbox.naive_utc(noon_utc()), "idempotency_key": ids, "esp_message_id": ids,
                            "outcome": "sent", "detail": None, "esp": "file", "attempt": 1})
    with warehouse.transaction() as tx:  # a stale process that lost the rows to run-a
        outbox.settle(tx, outcome, "run-b", noon_utc())
    assert state_counts(warehouse)["sending"] == 2
    with warehouse.transaction() as tx:
        outbox.settle(tx, outcome.iloc[:1], "run-a", noon_utc())
    assert (state_counts(warehouse)["sent"], state_counts(warehouse)["sending"]) == (1, 1)


def test_rounds_are_ten_seconds_at_the_limit_and_large_for_a_sink_without_one(tmp_path):
    assert default_chunk_size(FileEsp(path=str(tmp_path / "out.jsonl")), "properties") == 50_000
    hook = WebhookEsp(base_url="http://127.0.0.1:9/hook", secret="s", max_per_second=100)
    assert default_chunk_size(hook, None) == 1_000
    # Customer.io's Track API: 100 requests/s (90/s steady after a burst of 10), two per message.
    assert default_chunk_size(CustomerIoEsp(site_id="s", api_key="k"), None) == 450
    assert default_chunk_size(WebhookEsp(base_url="http://127.0.0.1:9/hook", secret="s", max_per_second=2), None) == 100

"""Delivery: the outbox that sends approved drafts (and profile updates) to an ESP exactly once,
and ESP events back.

`esp/` holds the adapters behind one interface, `outbox.py` the table and its
states, `policy.py` the send-time rules (suppression, caps, quiet hours,
backoff), `sender.py` the export loop, `ratelimit.py` the pacing,
`events.py` the way ESP events come back into `raw.email_events`.
"""

"""Decisioning: which playbook (or none) each customer gets, when, and why.

- `commands.py`: `nextbest uplift-backtest` on any randomized campaign export.
- `routing.py`: pure routing logic (expected value per playbook, audiences,
  suppression, caps, holdouts, exploration, reason codes).
- `timing.py`: the best hour of the week to send, per customer.
- `assets.py`: the `routing_decisions` asset (group `decisioning`).
"""

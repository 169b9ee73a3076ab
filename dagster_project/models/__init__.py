"""Models stage: predictions per customer learned from the warehouse.

Customer lifetime value (`clv.py` and its `clv_*` helpers): probability of a
purchase in the next 90 days and churn risk band, predicted 12-month spend and
expected next order date, from a BG/NBD + Gamma-Gamma model and a gradient
boosting model picked or blended by backtest; `nextbest clv-backtest` scores
them on any transaction log.
"""

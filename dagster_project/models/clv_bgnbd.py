"""BG/NBD: how often a customer buys and whether they are still a customer.

Fader, Hardie & Lee (2005), "Counting your customers the easy way". While
alive a customer buys at rate lambda ~ Gamma(r, alpha); after each repeat
purchase they drop out with probability p ~ Beta(a, b). Inputs are per-customer
arrays from `clv_rfm.rfm_summary`: x repeat purchase days, t_x the day of the
last one and T the days since the first purchase (all measured from the first
purchase, in days). The likelihood is computed in log space and fitted on log
parameters with a weak prior (see `clv_fitting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import gammaln, roots_genlaguerre, roots_jacobi

from dagster_project.models.clv_fitting import LogNormalPrior, MapFit, draw_log_params, fit_map

# Gauss-Jacobi nodes for the expectation over the dropout probability.
QUADRATURE_NODES = 24
LARGE_B = 1000.0  # past this Gauss-Jacobi overflows; a Gamma approximation is exact enough


@dataclass(frozen=True)
class BgNbdParams:
    """Population parameters: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    @classmethod
    def from_log(cls, theta: np.ndarray) -> "BgNbdParams":
        r, alpha, a, b = np.exp(theta)
        return cls(float(r), float(alpha), float(a), float(b))

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class BgNbdFit:
    """A fitted BG/NBD model with the Laplace covariance of its log-parameters."""

    params: BgNbdParams
    fit: MapFit
    n_customers: int

    def draws(self, count: int, seed: int = 0) -> list[BgNbdParams]:
        """Plausible parameter sets given the data (for intervals)."""
        return [BgNbdParams.from_log(t) for t in draw_log_params(self.fit, count, seed)]


def bgnbd_log_likelihood(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """Log-likelihood of each customer's (x, t_x, T) under the BG/NBD model."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    # log B(a, b+x) - log B(a, b), via gammaln (betaln is several times slower)
    beta_term = gammaln(b + x) - gammaln(a + b + x) - gammaln(b) + gammaln(a + b)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + beta_term
    still_alive = -(r + x) * np.log(alpha + T)
    # Dropped out right after the last purchase (impossible without a repeat);
    # B(a+1, b+x-1) = B(a, b+x) a / (b+x-1).
    repeat = x > 0
    dropped = np.full_like(x, -np.inf)
    dropped[repeat] = (np.log(a) - np.log(b + x[repeat] - 1)
                       - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return common + np.logaddexp(still_alive, dropped)


def fit_bgnbd(x, t_x, T, prior_scale: float | None = 1.0) -> BgNbdFit:
    """Fit BG/NBD by maximum likelihood (maximum a posteriori with a weak prior).

    `prior_scale` is the sd of the normal prior on each log-parameter, centred
    on r=1, a=1, b=3 and the store's pooled purchase rate; None fits plain
    maximum likelihood. The prior's pull fades as customers are added.
    """
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if len(x) == 0:
        raise ValueError("BG/NBD needs at least one customer with a purchase before the cutoff")
    # Customers with identical histories share one likelihood term.
    rows, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    ux, ut, uT = rows.T
    weights = counts.astype(float)  # an int @ float product takes numpy's slow path

    def neg_log_lik(theta: np.ndarray) -> float:
        return -float(weights @ bgnbd_log_likelihood(BgNbdParams.from_log(theta), ux, ut, uT))

    pooled_rate = (x.sum() + 1.0) / (T.sum() + 1.0)
    centre = np.array([0.0, -np.log(pooled_rate), 0.0, np.log(3.0)])
    prior = LogNormalPrior(centre, prior_scale) if prior_scale else None
    result = fit_map(neg_log_lik, centre, prior)
    return BgNbdFit(params=BgNbdParams.from_log(result.theta), fit=result, n_customers=len(x))


def p_alive(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """Probability each customer is still active at the end of their history."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    log_ratio = np.full_like(x, -np.inf)
    repeat = x > 0
    log_ratio[repeat] = (np.log(a) - np.log(b + x[repeat] - 1)
                         + (r + x[repeat]) * (np.log(alpha + T[repeat]) - np.log(alpha + t_x[repeat])))
    return np.exp(-np.logaddexp(0.0, log_ratio))


def p_purchase_within(params: BgNbdParams, x, t_x, T, horizon: float) -> np.ndarray:
    """Probability of at least one purchase in the next `horizon` days.

    Alive customers next buy at their (posterior) rate: Gamma(r+x, alpha+T).
    """
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    alpha_post = params.alpha + T
    none_if_alive = np.exp((params.r + x) * (np.log(alpha_post) - np.log(alpha_post + horizon)))
    return p_alive(params, x, t_x, T) * (1.0 - none_if_alive)


def expected_purchases(params: BgNbdParams, x, t_x, T, horizon: float) -> np.ndarray:
    """Expected number of purchase days in the next `horizon` days.

    Given alive with rate lambda and dropout p, E[Y(t)] = (1 - exp(-lambda p t)) / p;
    lambda integrates out in closed form and p ~ Beta(a, b+x) by Gauss-Jacobi
    quadrature, which stays finite for a <= 1 where the hypergeometric closed
    form breaks down.
    """
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    out = np.empty_like(x)
    scale = horizon / (params.alpha + T)
    for value in np.unique(x):
        group = x == value
        p, weights = _beta_quadrature(params.a, params.b + value)
        # Within a group only T varies, and many customers share it: each distinct T once
        # (CLV intervals repeat this 40 times per customer).
        s, inverse = np.unique(scale[group], return_inverse=True)
        # (1 - (1 + p s)^-k) / p, written to stay accurate as p -> 0
        per_node = -np.expm1(-(params.r + value) * np.log1p(p[None, :] * s[:, None])) / p[None, :]
        out[group] = (per_node @ weights)[inverse]
    return p_alive(params, x, t_x, T) * out


@lru_cache(maxsize=4096)
def _beta_quadrature(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E[f(p)], p ~ Beta(a, b) (cached: the same pairs recur)."""
    if b < LARGE_B:
        with np.errstate(all="ignore"):
            nodes, weights = roots_jacobi(QUADRATURE_NODES, b - 1, a - 1)
        if np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights)) and weights.sum() > 0:
            return (nodes + 1.0) / 2.0, weights / weights.sum()
    # For large b, Beta(a, b) is Gamma(a, rate b) to within 1/b: Gauss-Laguerre.
    with np.errstate(all="ignore"):
        nodes, weights = roots_genlaguerre(QUADRATURE_NODES, a - 1)
        weights = weights / weights.sum()
    if np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights)):
        return np.clip(nodes / b, 1e-300, 1.0), weights
    # Both a and b huge: the distribution is a spike at its mean.
    return np.array([a / (a + b)]), np.array([1.0])


def expected_days_to_next_purchase(params: BgNbdParams, x, T) -> np.ndarray:
    """Mean wait for the next purchase of a customer who is still active: 1 / E[rate]."""
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    return (params.alpha + T) / (params.r + x)

"""Gamma-Gamma: how much a customer spends per purchase.

Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves". Each
purchase's value ~ Gamma(p, nu) with nu ~ Gamma(q, gamma) per customer, so a
customer's average repeat spend shrinks towards the store's mean by how many
repeat purchases back it up. Fitted on customers with repeat purchases of
positive value; q > 1 is enforced so the expected spend exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from dagster_project.models.clv_fitting import LogNormalPrior, MapFit, draw_log_params, fit_map


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per purchase ~ Gamma(p, nu); nu ~ Gamma(q, gamma) across customers."""

    p: float
    q: float
    gamma: float

    @classmethod
    def from_log(cls, theta: np.ndarray) -> "GammaGammaParams":
        # theta = log p, log (q - 1), log gamma
        return cls(float(np.exp(theta[0])), float(1.0 + np.exp(theta[1])), float(np.exp(theta[2])))

    @property
    def mean_spend(self) -> float:
        """The store's mean spend per purchase implied by the parameters."""
        return self.p * self.gamma / (self.q - 1.0)

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma}


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma model; `fit` is None when no customer had repeat spend."""

    params: GammaGammaParams
    fit: MapFit | None
    n_customers: int

    def draws(self, count: int, seed: int = 0) -> list[GammaGammaParams]:
        """Plausible parameter sets given the data (for intervals)."""
        if self.fit is None:
            return [self.params] * count
        return [GammaGammaParams.from_log(t) for t in draw_log_params(self.fit, count, seed)]


def gamma_gamma_log_likelihood(params: GammaGammaParams, x, monetary) -> np.ndarray:
    """Log-likelihood of each customer's average repeat spend `monetary` over x purchases."""
    p, q, g = params.p, params.q, params.gamma
    x, m = np.asarray(x, dtype=float), np.asarray(monetary, dtype=float)
    return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(g)
            + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(g + m * x))


def fit_gamma_gamma(x, monetary, fallback_mean_spend: float,
                    prior_scale: float | None = 1.0) -> GammaGammaFit:
    """Fit Gamma-Gamma on customers with repeat purchases of positive value.

    With no such customer, every customer is predicted `fallback_mean_spend`
    (for example the mean first-order value).
    """
    x, m = np.asarray(x, dtype=float), np.asarray(monetary, dtype=float)
    usable = (x > 0) & (m > 0)
    x, m = x[usable], m[usable]
    if len(x) == 0:
        # p large and q = 1 + p: a degenerate prior at the fallback mean.
        flat = GammaGammaParams(p=100.0, q=101.0, gamma=max(fallback_mean_spend, 1e-9))
        return GammaGammaFit(params=flat, fit=None, n_customers=0)

    def neg_log_lik(theta: np.ndarray) -> float:
        return -float(gamma_gamma_log_likelihood(GammaGammaParams.from_log(theta), x, m).sum())

    # Centre: p = 4, q = 4, gamma matching the observed mean repeat spend.
    mean_spend = float(np.average(m, weights=x))
    centre = np.array([np.log(4.0), np.log(3.0), np.log(mean_spend * 3.0 / 4.0)])
    prior = LogNormalPrior(centre, prior_scale) if prior_scale else None
    result = fit_map(neg_log_lik, centre, prior)
    return GammaGammaFit(params=GammaGammaParams.from_log(result.theta), fit=result, n_customers=len(x))


def expected_spend(params: GammaGammaParams, x, monetary) -> np.ndarray:
    """Expected spend per future purchase, shrunk towards the store mean."""
    x, m = np.asarray(x, dtype=float), np.asarray(monetary, dtype=float)
    m = np.where((x > 0) & (m > 0), m, 0.0)
    x = np.where(m > 0, x, 0.0)
    return (params.gamma + m * x) * params.p / (params.p * x + params.q - 1.0)

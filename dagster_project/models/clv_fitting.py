"""Maximum a posteriori fits with a Laplace approximation, shared by the CLV models.

The models fit their parameters on the log scale with L-BFGS-B. A weak normal
prior on each log-parameter keeps small stores (tens of customers) from running
off to extreme values; the curvature at the optimum gives a covariance, so
predictions can carry intervals that widen when there is little data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize

# Log-parameters stay inside exp(+-12): wide enough for any sensible store,
# narrow enough that a flat likelihood cannot overflow.
LOG_BOUND = 12.0


@dataclass(frozen=True)
class LogNormalPrior:
    """Independent normal priors on the log-parameters: centre and scale (sd)."""

    centre: np.ndarray
    scale: float

    def neg_log_density(self, theta: np.ndarray) -> float:
        z = (theta - self.centre) / self.scale
        return 0.5 * float(z @ z)


@dataclass(frozen=True)
class MapFit:
    """The optimum on the log scale, its covariance and how the fit went."""

    theta: np.ndarray
    covariance: np.ndarray
    neg_log_posterior: float
    converged: bool
    message: str


def fit_map(neg_log_lik: Callable[[np.ndarray], float], start: np.ndarray,
            prior: LogNormalPrior | None) -> MapFit:
    """Minimise the negative log-likelihood (+ prior) over log-parameters.

    Returns the optimum and a Laplace covariance (inverse of the numerical
    Hessian, repaired to be positive definite when the surface is flat).
    """
    def objective(theta: np.ndarray) -> float:
        value = neg_log_lik(theta)
        if prior is not None:
            value += prior.neg_log_density(theta)
        return value if np.isfinite(value) else 1e300

    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    options = {"maxiter": 1000, "ftol": 1e-11, "gtol": 1e-6}
    best = minimize(objective, np.asarray(start, float), method="L-BFGS-B", bounds=bounds, options=options)
    # A restart from the optimum (fresh curvature memory) guards against
    # L-BFGS-B stopping early on the long flat ridges these likelihoods have.
    again = minimize(objective, best.x, method="L-BFGS-B", bounds=bounds, options=options)
    if again.fun <= best.fun:
        best = again
    hessian = numerical_hessian(objective, best.x)
    return MapFit(theta=best.x, covariance=_safe_inverse(hessian), neg_log_posterior=float(best.fun),
                  converged=bool(best.success), message=str(best.message))


def numerical_hessian(f: Callable[[np.ndarray], float], x: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian of a scalar function (a handful of parameters)."""
    n = len(x)
    hessian = np.empty((n, n))
    f0 = f(x)
    for i in range(n):
        for j in range(i, n):
            ei = np.zeros(n)
            ej = np.zeros(n)
            ei[i] = step
            ej[j] = step
            if i == j:
                value = (f(x + ei) - 2 * f0 + f(x - ei)) / step**2
            else:
                value = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * step**2)
            hessian[i, j] = hessian[j, i] = value
    return hessian


def _safe_inverse(hessian: np.ndarray) -> np.ndarray:
    # Flat directions (eigenvalue ~0) mean "the data say little here": cap the
    # variance at a wide but finite value instead of failing.
    values, vectors = np.linalg.eigh((hessian + hessian.T) / 2)
    values = np.clip(values, 1e-2, None)
    return (vectors / values) @ vectors.T


def draw_log_params(fit: MapFit, draws: int, seed: int) -> np.ndarray:
    """Parameter draws (draws x n, natural log scale) from the Laplace approximation."""
    rng = np.random.default_rng(seed)
    sample = rng.multivariate_normal(fit.theta, fit.covariance, size=draws, method="eigh")
    return np.clip(sample, -LOG_BOUND, LOG_BOUND)

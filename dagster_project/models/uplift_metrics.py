"""How good is an uplift ranking, and what is a targeting policy worth? Pure numpy.

Conventions (every figure is "per customer in the evaluated population"):

- Qini curve q(x): incremental outcomes from treating the top x share by
  predicted uplift, q(k) = Y_t(k) - Y_c(k) * N_t(k) / N_c(k) scaled by N / N_t
  and divided by N, so q(1) is the ATE. The Qini coefficient is the area
  between q and the random-targeting line x * q(1): > 0 means the ranking beats
  random, 0 means it does not. Rows with tied predictions are one step of the
  curve (straight across them): their order in the file is not a ranking.
- AUUC: area under the uplift curve u(x) = (mean_t(top x) - mean_c(top x)) * x;
  random targeting gives ATE / 2 (reported as `auuc_random`).
- Policy values are AIPW (doubly robust) estimates with the known randomized
  arm shares, so they are unbiased even where the outcome models are off, and
  come with a 95% CI from the per-row scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Z95 = 1.959963984540054


def ate(treated, y) -> dict:
    """Difference in means with a Neyman (Welch) 95% CI."""
    t, y = np.asarray(treated, bool), np.asarray(y, float)
    yt, yc = y[t], y[~t]
    diff = yt.mean() - yc.mean()
    # One row in an arm has no variance: no CI (None, as JSON must have it; NaN is not JSON).
    se = float(np.sqrt(yt.var(ddof=1) / len(yt) + yc.var(ddof=1) / len(yc))) if min(len(yt), len(yc)) > 1 else None
    return {"ate": float(diff), "ci_low": None if se is None else float(diff - Z95 * se),
            "ci_high": None if se is None else float(diff + Z95 * se), "se": se,
            "n_treated": int(len(yt)), "n_control": int(len(yc)),
            "rate_treated": float(yt.mean()), "rate_control": float(yc.mean())}


def _cumulative(uplift, treated, y):
    """Treated / control rows and outcomes down the ranking, at the end of each group of tied predictions,
    and the rows targeted there: a ranking cannot target part of a tie, so cutting a tie by the rows'
    order would score the file's order (a constant prediction on a file sorted by outcome beat random)."""
    u = np.asarray(uplift, float)
    order = np.argsort(-u, kind="stable")
    t = np.asarray(treated, bool)[order]
    y = np.asarray(y, float)[order]
    ends = np.r_[np.flatnonzero(np.diff(u[order]) != 0), len(u) - 1] if len(u) else np.zeros(0, int)
    return (np.cumsum(t)[ends], np.cumsum(~t)[ends], np.cumsum(y * t)[ends], np.cumsum(y * ~t)[ends],
            ends + 1)


def qini_curve(uplift, treated, y) -> tuple[np.ndarray, np.ndarray]:
    """(x, q): share targeted and incremental outcomes per customer, starting at (0, 0), one point per
    group of tied predictions."""
    nt, nc, yt, yc, targeted = _cumulative(uplift, treated, y)
    n, n_t = len(np.asarray(uplift)), max(nt[-1], 1)
    q = (yt - np.where(nc > 0, yc * nt / np.maximum(nc, 1), 0.0)) / n_t
    return np.concatenate([[0.0], targeted / n]), np.concatenate([[0.0], q])


def qini_coefficient(uplift, treated, y) -> float:
    """Area between the Qini curve and random targeting (per customer)."""
    x, q = qini_curve(uplift, treated, y)
    return float(np.trapezoid(q - x * q[-1], x))


def auuc(uplift, treated, y) -> float:
    """Area under the uplift curve (per customer); random targeting scores ATE / 2."""
    nt, nc, yt, yc, targeted = _cumulative(uplift, treated, y)
    gap = np.where((nt > 0) & (nc > 0), yt / np.maximum(nt, 1) - yc / np.maximum(nc, 1), 0.0)
    x = targeted / len(np.asarray(uplift))
    return float(np.trapezoid(np.concatenate([[0.0], gap * x]), np.concatenate([[0.0], x])))


def uplift_at_top(uplift, treated, y, share: float) -> dict:
    """Observed treated-minus-control rate among the top `share` by predicted uplift."""
    order = np.argsort(-np.asarray(uplift, float), kind="stable")
    top = order[: max(1, int(np.ceil(share * len(order))))]
    t = np.asarray(treated, bool)[top]
    if t.all() or not t.any():
        return {"share": share, "uplift": None, "ci_low": None, "ci_high": None, "n": int(len(top))}
    result = ate(t, np.asarray(y, float)[top])
    return {"share": share, "uplift": result["ate"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
            "predicted": float(np.mean(np.asarray(uplift, float)[top])), "n": int(len(top))}


def calibration_slope(uplift, treated, y) -> dict:
    """How far predicted uplift differences are real: the slope of the measured effect on the prediction.

    In a randomized experiment the transformed outcome z = y (t / p - (1 - t) / (1 - p))
    (p = treated share) has expectation equal to the true uplift, so regressing z on
    the centred predictions gives slope 1 for predictions as spread as the truth, 0 for
    differences that are noise, and below 1 for overfitted ones. Use it on predictions
    for rows the model never saw (out-of-fold or held out). Returns slope, its standard
    error and z (slope / se; 0 when the predictions do not vary).
    """
    u, t, y = np.asarray(uplift, float), np.asarray(treated, bool), np.asarray(y, float)
    p = t.mean()
    centred = u - u.mean()
    spread = float((centred ** 2).sum())
    if not np.ptp(u) > 0 or not 0 < p < 1 or len(y) < 3:
        return {"slope": 0.0, "se": float("nan"), "z": 0.0}
    z = y * (t / p - (~t) / (1 - p))
    slope = float((centred * (z - z.mean())).sum() / spread)
    residual = z - z.mean() - slope * centred
    se = float(np.sqrt((residual ** 2).sum() / (len(y) - 2) / spread))
    return {"slope": slope, "se": se, "z": slope / se if se > 0 else 0.0}


def ranking_report(uplift, treated, y) -> dict:
    """Qini, AUUC and uplift at the top 10% and 30% for one arm vs control."""
    a = ate(treated, y)
    return {
        "qini": qini_coefficient(uplift, treated, y),
        "auuc": auuc(uplift, treated, y),
        "auuc_random": a["ate"] / 2,
        "uplift_top_10pct": uplift_at_top(uplift, treated, y, 0.10),
        "uplift_top_30pct": uplift_at_top(uplift, treated, y, 0.30),
    }


def aipw_scores(arms, y, outcomes: pd.DataFrame, shares: dict[str, float] | None = None) -> pd.DataFrame:
    """Per row and arm, the doubly robust score of 'this row gets that arm'.

    Gamma_i(a) = mu_a(x_i) + 1[A_i = a] (y_i - mu_a(x_i)) / p_a, with p_a the
    arm's share (known in a randomized experiment). Averaging a policy's
    column choice over rows estimates that policy's value.
    """
    arms = np.asarray(arms).astype(str)
    y = np.asarray(y, float)
    scores = pd.DataFrame(index=range(len(y)))
    for arm in outcomes.columns:
        p = shares[arm] if shares else float(np.mean(arms == arm))
        mu = outcomes[arm].to_numpy()
        scores[arm] = mu + (arms == arm) * (y - mu) / p
    return scores


def policy_value(scores: pd.DataFrame, choice, baseline: str | None = None) -> dict:
    """Value of a policy (per row, the arm in `choice`) with a 95% CI, and its gain over `baseline`."""
    choice = np.asarray(choice).astype(str)
    columns = list(scores.columns)
    picked = scores.to_numpy()[np.arange(len(choice)), [columns.index(c) for c in choice]]
    out = {"value": float(picked.mean()), "ci_low": None, "ci_high": None}
    se = picked.std(ddof=1) / np.sqrt(len(picked))
    out["ci_low"], out["ci_high"] = float(out["value"] - Z95 * se), float(out["value"] + Z95 * se)
    if baseline is not None:
        gain = picked - scores[baseline].to_numpy()
        se = gain.std(ddof=1) / np.sqrt(len(gain))
        out["gain_vs_" + baseline] = {"value": float(gain.mean()), "ci_low": float(gain.mean() - Z95 * se),
                                      "ci_high": float(gain.mean() + Z95 * se)}
    counts = pd.Series(choice).value_counts()
    out["share_per_arm"] = {arm: round(float(counts.get(arm, 0)) / len(choice), 4) for arm in columns}
    return out


def best_arm(uplift: pd.DataFrame, control: str, value=None, cost: float = 0.0) -> np.ndarray:
    """Per row, the treatment with the highest uplift x value - cost, or `control` when none is positive."""
    gains = uplift.to_numpy(float) * (1.0 if value is None else np.asarray(value, float)[:, None]) - cost
    best = gains.argmax(axis=1)
    return np.where(gains[np.arange(len(best)), best] > 0, np.asarray(uplift.columns)[best], control)

"""The one-run empirical privacy audit: how much of each canary's direction survives training."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from fedpriv.defenses.canary import canary_direction
from fedpriv.errors import ConfigError
from fedpriv.models import state_from_bytes
from fedpriv.parameters import state_to_vector
from fedpriv.rundir import RunDirectory, write_json
from fedpriv.task import initial_state

# Andrew, Kairouz, Oh, Oprea, McMahan, Suriyakumar, "One-shot Empirical Privacy Estimation
# for Federated Learning", ICLR 2024, Algorithm 1 with the final model only: the cosine of
# the released model's total change with each inserted canary's direction, against the
# cosines with directions that were never inserted (the null: about N(0, 1/d)). Modelling
# both as Gaussians of the null's spread, the canaries' shift ``mu`` (in null deviations) is
# a mu-Gaussian-DP mechanism (Dong, Roth, Su 2019); its epsilon at ``delta`` is the estimate.
# With few canaries the mean shift is itself uncertain: the *lower bound* uses the shift's
# one-sided 95% lower confidence limit, so that it errs below the truth, as a check of an
# accountant's claim must.
CONFIDENCE_Z = 1.645
NULL_DIRECTIONS = 1000


def gdp_epsilon(mu: float, delta: float) -> float:
    """The epsilon of mu-GDP at ``delta``: ``delta = Phi(-e/mu + mu/2) - e^e Phi(-e/mu - mu/2)``."""
    if mu <= 0:
        return 0.0

    def gap(epsilon: float) -> float:
        return float(
            norm.cdf(-epsilon / mu + mu / 2)
            - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2)
            - delta
        )

    if gap(0.0) <= 0:
        return 0.0
    high = 1.0
    while gap(high) > 0:
        high *= 2
        if high > 1e4:
            return math.inf
    return float(brentq(gap, 0.0, high))


@dataclass(frozen=True)
class AuditResult:
    """The audit of one run.

    Attributes
    ----------
    canaries, null_directions : int
        Directions inserted (the run's ``dp-canaries``) and never inserted.
    canary_cosines : list[float]
        Each canary's cosine with the released model's change from the seed's model.
    null_mean, null_std, canary_mean : float
        The two distributions' statistics.
    mu : float
        The canaries' shift in null standard deviations.
    mu_lower : float
        Its one-sided 95% lower confidence limit.
    estimated_epsilon : float
        The point estimate at ``delta`` (from ``mu``).
    empirical_epsilon : float
        The lower bound at ``delta`` (from ``mu_lower``): what the run is checked by.
    delta : float
        The delta it is computed at.
    claimed_epsilon : float | None
        The accountant's epsilon after the last round, where the run has one.

    """

    canaries: int
    null_directions: int
    canary_cosines: list[float]
    null_mean: float
    null_std: float
    canary_mean: float
    mu: float
    mu_lower: float
    estimated_epsilon: float
    empirical_epsilon: float
    delta: float
    claimed_epsilon: float | None

    def to_json(self) -> dict[str, Any]:
        """As ``attacks/audit/dp-audit.json`` holds it."""
        data = asdict(self)
        for key in ("estimated_epsilon", "empirical_epsilon"):
            if math.isinf(data[key]):
                data[key] = "inf"
        return data


def dp_audit(run_dir: str | Path) -> AuditResult:
    """Audit a finished run that inserted ``dp-canaries`` canaries; write its result.

    Raises
    ------
    ConfigError
        If the run has no canary, or no released model yet.

    """
    rundir = RunDirectory(run_dir)
    config = rundir.read_config()
    if config.dp_canaries < 2:
        raise ConfigError(
            "the DP audit needs a run with dp-canaries >= 2 (canary clients inserted in it)"
        )
    if not rundir.has_model():
        raise ConfigError(f"{rundir.path} has no released model.pt to audit")
    final = state_to_vector(state_from_bytes(rundir.model_path.read_bytes()))
    change = final - state_to_vector(initial_state(config))
    length = float(np.linalg.norm(change))
    if length == 0:
        raise ConfigError("the released model equals the seed's: nothing to audit")

    def cosine(direction: np.ndarray) -> float:
        return float(change @ direction / length)

    canaries = [cosine(canary_direction(config, i, change.size)) for i in range(config.dp_canaries)]
    # Never inserted: indices past the canaries' (the same generator, other streams).
    nulls = np.array(
        [
            cosine(canary_direction(config, config.dp_canaries + 1_000_000 + i, change.size))
            for i in range(NULL_DIRECTIONS)
        ]
    )
    null_mean, null_std = float(nulls.mean()), float(nulls.std(ddof=1))
    mu = (float(np.mean(canaries)) - null_mean) / null_std
    spread = float(np.std(canaries, ddof=1)) / math.sqrt(len(canaries))
    mu_lower = (float(np.mean(canaries)) - CONFIDENCE_Z * spread - null_mean) / null_std
    history = rundir.read_history().rounds if rundir.has_history() else []
    claimed = history[-1].dp_epsilon if history else None
    result = AuditResult(
        canaries=config.dp_canaries,
        null_directions=NULL_DIRECTIONS,
        canary_cosines=canaries,
        null_mean=null_mean,
        null_std=null_std,
        canary_mean=float(np.mean(canaries)),
        mu=mu,
        mu_lower=mu_lower,
        estimated_epsilon=gdp_epsilon(mu, config.dp_delta),
        empirical_epsilon=gdp_epsilon(mu_lower, config.dp_delta),
        delta=config.dp_delta,
        claimed_epsilon=claimed,
    )
    write_json(rundir.audit_path, result.to_json())
    return result

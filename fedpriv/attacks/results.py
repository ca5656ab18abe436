"""Attack results as typed values, and their JSON form (``attacks/<threat>/<attack>.json``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from fedpriv.errors import ConfigError

# A JSON value as result files hold it.
Json = Any
# What an outsider's queries return.
OUTPUTS = ("probabilities", "labels")


class Threat(StrEnum):
    """Who attacks: each threat sees the run through one view."""

    CURIOUS_SERVER = "curious-server"
    OUTSIDER = "outsider"
    COLLUDING_CLIENT = "colluding-client"
    MALICIOUS_SERVER = "malicious-server"


class Family(StrEnum):
    """What an attack recovers; results of one family share their metrics."""

    RECONSTRUCTION = "reconstruction"
    MEMBERSHIP = "membership"
    CLIENT_MEMBERSHIP = "client-membership"
    MODEL_INVERSION = "model-inversion"


class Status(StrEnum):
    """How an attack ended."""

    SCORED = "scored"
    NOT_APPLICABLE = "not-applicable"
    DIVERGED = "diverged"


@dataclass(frozen=True)
class ReconstructionMetrics:
    """Gradient inversion, averaged over the attacked updates (after matching to the truth)."""

    mse: float
    psnr: float
    ssim: float
    label_accuracy: float
    # Share of the attacked clients' records reconstructed at >= 30 dB PSNR.
    recovered_fraction: float | None = None

    family: ClassVar[Family] = Family.RECONSTRUCTION
    headline: ClassVar[str] = "psnr"


@dataclass(frozen=True)
class MembershipMetrics:
    """Membership inference as the literature reports it (Carlini et al. 2022).

    ``members`` and ``non_members`` are the counts every rate rests on: a TPR at an FPR
    below ``1 / non_members`` rests on zero false positives (:meth:`resolved` says which).
    """

    auc: float
    advantage: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    members: int
    non_members: int
    tpr_at_0_01pct_fpr: float = 0.0

    family: ClassVar[Family] = Family.MEMBERSHIP
    headline: ClassVar[str] = "auc"

    def resolved(self, fpr: float) -> bool:
        """Whether the non-members are enough for one false positive at ``fpr`` to exist."""
        return self.non_members * fpr >= 1.0


@dataclass(frozen=True)
class ModelInversionMetrics:
    """MI-Face: how recognizable the inversions are, by a separate classifier and by SSIM."""

    eval_accuracy: float
    ssim_to_class_mean: float
    mean_cost: float

    family: ClassVar[Family] = Family.MODEL_INVERSION
    headline: ClassVar[str] = "eval_accuracy"


Metrics = ReconstructionMetrics | MembershipMetrics | ModelInversionMetrics
_METRICS: dict[Family, type[Metrics]] = {
    **{m.family: m for m in (ReconstructionMetrics, MembershipMetrics, ModelInversionMetrics)},
    # Membership of whole clients: the same rates, over clients instead of records.
    Family.CLIENT_MEMBERSHIP: MembershipMetrics,
}


@dataclass(frozen=True)
class ClientReconstruction:
    """The inversion of one client's update.

    ``attempts`` counts the optimization's starts (diverged ones are replaced, within the
    budget); a ``diverged`` client has no matching loss and NaN scores (``null`` in JSON).
    """

    round: int
    node: int
    num_examples: int | None
    reconstructed: int
    matching_loss: float | None
    mse: float
    psnr: float
    ssim: float
    label_accuracy: float
    attempts: int = 1
    diverged: bool = False
    # Share of the client's records reconstructed at >= 30 dB (NaN where diverged).
    recovered: float = math.nan


@dataclass(frozen=True)
class LabelInversion:
    """MI-Face's inversion of one label."""

    label: int
    cost: float
    iterations: int
    queries: int
    stopped_by: str


@dataclass(frozen=True)
class RocCurve:
    """The ROC curve's points (for plots)."""

    fpr: list[float]
    tpr: list[float]


@dataclass(frozen=True)
class AttackResult:
    """One attack on one run, as one threat sees it.

    Attributes
    ----------
    attack, threat, family
        What ran, for whom, and what it recovers.
    status : Status
        ``scored``, ``not-applicable`` (``reason`` says why) or ``diverged`` (the
        optimization failed within its budget: no score is reported).
    reason : str | None
        Why the attack did not apply or diverged.
    metrics : Metrics | None
        The scores, when ``status`` is ``scored``.
    settings : dict[str, Json] | None
        The budget and settings it ran with (recorded with every result).
    seconds : float
        Wall time.
    clients, labels, roc, queries, defense
        Per-family detail: each inverted update, each MI-Face label, the ROC curve, the
        outsider's query count and the defense it queried through.
    figure : str | None
        The figure file beside the result (drawn by :mod:`fedpriv.report`).

    """

    attack: str
    threat: Threat
    family: Family
    status: Status
    reason: str | None = None
    metrics: Metrics | None = None
    settings: dict[str, Json] | None = None
    seconds: float = 0.0
    clients: list[ClientReconstruction] = field(default_factory=list)
    labels: list[LabelInversion] = field(default_factory=list)
    roc: RocCurve | None = None
    queries: int | None = None
    defense: dict[str, Json] | None = None
    figure: str | None = None

    @property
    def applicable(self) -> bool:
        """Whether the attack could run on this view (scored or diverged)."""
        return self.status != Status.NOT_APPLICABLE

    @property
    def scored(self) -> bool:
        """Whether the result carries metrics."""
        return self.status == Status.SCORED and self.metrics is not None

    def headline(self) -> float | None:
        """The family's headline metric (PSNR, AUC, MI-Face accuracy), if scored."""
        if self.metrics is None:
            return None
        value: float = getattr(self.metrics, self.metrics.headline)
        return value

    def to_json(self) -> dict[str, Json]:
        """The result as its JSON file holds it."""
        data: dict[str, Json] = {
            "attack": self.attack,
            "threat": str(self.threat),
            "family": str(self.family),
            "status": str(self.status),
            "applicable": self.applicable,
            "reason": self.reason,
            "metrics": None if self.metrics is None else dataclasses.asdict(self.metrics),
            "settings": self.settings,
            "seconds": self.seconds,
        }
        if self.clients:
            data["clients"] = [dataclasses.asdict(c) for c in self.clients]
        if self.labels:
            data["labels"] = [dataclasses.asdict(label) for label in self.labels]
        if self.roc is not None:
            data["roc"] = dataclasses.asdict(self.roc)
        if self.queries is not None:
            data["queries"] = self.queries
        if self.defense is not None:
            data["defense"] = self.defense
        if self.figure is not None:
            data["figure"] = self.figure
        finite: dict[str, Json] = _finite(data)
        return finite

    @classmethod
    def from_json(cls, data: dict[str, Json]) -> AttackResult:
        """Read a result written by :meth:`to_json`."""
        try:
            family = Family(data["family"])
            metrics = data.get("metrics")
            roc = data.get("roc")
            return cls(
                attack=str(data["attack"]),
                threat=Threat(data["threat"]),
                family=family,
                status=Status(data["status"]),
                reason=data.get("reason"),
                metrics=None if metrics is None else _METRICS[family](**_numbers(metrics)),
                settings=data.get("settings"),
                seconds=float(data.get("seconds", 0.0)),
                clients=[ClientReconstruction(**_numbers(c)) for c in data.get("clients", [])],
                labels=[LabelInversion(**c) for c in data.get("labels", [])],
                roc=None if roc is None else RocCurve(**roc),
                queries=data.get("queries"),
                defense=data.get("defense"),
                figure=data.get("figure"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not an attack result: {err}") from err


def _finite(value: Json) -> Json:
    """JSON without NaN/inf: infinities become strings, NaN becomes null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def _numbers(data: dict[str, Json]) -> dict[str, Json]:
    """Undo :func:`_finite` for the numbers of a metrics record."""
    inf = {"inf": math.inf, "-inf": -math.inf}
    return {k: inf.get(v, v) if isinstance(v, str) else v for k, v in data.items()}

"""Membership inference as attack plug-ins: thresholds, label-only, Shokri, ML-Leaks, LiRA, RMIA."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fedpriv.attacks.base import Attack
from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.estimate import QUICK, Estimate
from fedpriv.attacks.membership import (
    lira_scores,
    ml_leaks_scores,
    rmia_scores,
    shokri_scores,
    threshold_scores,
    tune_rmia,
)
from fedpriv.attacks.metrics import membership_metrics, roc_points
from fedpriv.attacks.results import (
    AttackResult,
    Family,
    Json,
    Status,
)
from fedpriv.attacks.views import Capability, NotApplicable, OutsiderView, View

SCORES = frozenset({Capability.QUERY_PROBABILITIES, Capability.POPULATION_DATA})
LABELS = frozenset({Capability.QUERY_LABELS, Capability.POPULATION_DATA})


class MembershipAttack(Attack):
    """Scores each candidate record (higher = member) from the outsider's answers.

    Every membership attack of an invocation tests the same seeded pool of members and
    non-members; shadow-based attacks share one set of shadow models.
    """

    family = Family.MEMBERSHIP
    requirements = (SCORES,)
    # The candidate pool (its size and seed) and what the outsider receives.
    uses: ClassVar[tuple[str, ...]] = (
        "membership.max_targets",
        "membership.seed",
        "outsider_output",
    )
    uses_shadows: ClassVar[bool] = False
    # Whether it reads the record's true label (label-aware) or only the model's answer
    # (label-blind: what MemGuard is built to fool). Recorded in every result's settings.
    uses_labels: ClassVar[bool] = True

    def __init__(self) -> None:
        # Settings an attack chose on the attacker's own models (recorded in the result).
        self.chosen: dict[str, Json] = {}

    def estimate(
        self, context: AttackContext, view: View, needs: frozenset[Capability]
    ) -> Estimate:
        """Shadow-based attacks: the shadow models' training (shared); the others are quick."""
        if not self.uses_shadows:
            return QUICK
        shadows = context.shadows_estimate()
        return Estimate(QUICK.seconds + shadows.seconds, shadows.basis, shared=shadows.shared)

    def scores(self, context: AttackContext, answers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Membership scores of the pool's records."""
        return threshold_scores(self.name, answers, labels)

    def run(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> AttackResult:
        """Query the released model on the pool and score membership."""
        if not isinstance(view, OutsiderView):
            raise NotApplicable(f"the {view.threat} view cannot query the released model")
        pool = context.pool()
        labels = context.truth.y[pool.indices]
        answers = view.query(context.truth.x[pool.indices])
        scores = self.scores(context, answers, labels)
        settings: dict[str, Json] = {"output": view.output, "uses_labels": self.uses_labels}
        if self.uses_shadows:
            settings.update(context.settings.membership.to_dict())
        settings.update(self.chosen)
        defense = view.released.describe()
        if defense is not None:
            distortion = view.distortion
            defense = {
                **defense,
                "mean_l1_distortion": float(np.mean(distortion)),
                "max_l1_distortion": float(np.max(distortion)),
            }
        return AttackResult(
            self.name,
            context.threat,
            self.family,
            Status.SCORED,
            metrics=membership_metrics(scores, pool.is_member),
            settings=settings,
            roc=roc_points(scores, pool.is_member),
            queries=view.queries,
            defense=defense,
        )


class LossAttack(MembershipAttack):
    """Yeom et al. 2018: members have lower loss."""

    name = "loss"


class ConfidenceAttack(MembershipAttack):
    """Members get higher top confidence (Yeom et al. 2018's threshold, without the label)."""

    name = "confidence"
    uses_labels = False


class EntropyAttack(MembershipAttack):
    """Members get lower-entropy answers (Salem et al. 2019, adversary 3; label-blind)."""

    name = "entropy"
    uses_labels = False


class LabelOnlyAttack(MembershipAttack):
    """The gap attack: a correctly classified record is called a member (labels suffice)."""

    name = "label-only"
    requirements = (LABELS,)


class ShokriAttack(MembershipAttack):
    """Shokri et al. 2017: an attack classifier trained on shadow models' outputs."""

    name = "shokri"
    uses_shadows = True
    uses = ("membership", "outsider_output")

    def scores(self, context: AttackContext, answers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The attack classifier's membership probability."""
        return shokri_scores(answers, labels, context.shadows(), context.settings.membership.seed)


class MLLeaksAttack(MembershipAttack):
    """Salem et al. 2019 (ML-Leaks), adversary 1: shadow-trained classifier on top-3 posteriors."""

    name = "ml-leaks"
    uses_shadows = True
    uses_labels = False
    uses = ("membership", "outsider_output")

    def scores(self, context: AttackContext, answers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The attack classifier's membership probability (labels unused)."""
        return ml_leaks_scores(answers, context.shadows(), context.settings.membership.seed)


class LiRAOffline(MembershipAttack):
    """Carlini et al. 2022, offline: how unlikely the answer is under OUT shadow models."""

    name = "lira-offline"
    uses_shadows = True
    uses = ("membership", "outsider_output")

    def scores(self, context: AttackContext, answers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The offline likelihood test."""
        return lira_scores(
            answers,
            labels,
            context.shadows(),
            online=False,
            fixed_variance=context.settings.membership.fixed_variance,
        )


class LiRAOnline(MembershipAttack):
    """Carlini et al. 2022, online: the IN/OUT Gaussian likelihood ratio."""

    name = "lira-online"
    uses_shadows = True
    uses = ("membership", "outsider_output")

    def scores(self, context: AttackContext, answers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The online likelihood ratio."""
        return lira_scores(
            answers,
            labels,
            context.shadows(),
            online=True,
            fixed_variance=context.settings.membership.fixed_variance,
        )


class RMIAOffline(MembershipAttack):
    """Zarifzadeh et al. 2024, offline: a likelihood ratio tested against the population.

    Its reference models (``rmia_references``) did not train on the record.
    """

    name = "rmia-offline"
    uses_shadows = True
    uses = ("membership", "outsider_output")
    online: ClassVar[bool] = False

    def scores(self, context: AttackContext, answers: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The pairwise likelihood-ratio test against the population.

        The temperature and the offline ``a`` are chosen on the reference models themselves
        (:func:`tune_rmia`) unless the settings fix them.
        """
        settings = context.settings.membership
        shadows = context.shadows()
        references = settings.rmia_references
        temperature, a = settings.rmia_temperature, settings.rmia_offline_a
        if not temperature:
            temperature, a = tune_rmia(
                labels, shadows, references, self.online, settings.rmia_gamma
            )
        self.chosen = {"rmia_temperature_used": temperature, "rmia_offline_a_used": a}
        return rmia_scores(
            answers,
            labels,
            shadows,
            np.flatnonzero(~context.pool().is_member),
            list(range(references)),
            online=self.online,
            offline_a=a,
            gamma=settings.rmia_gamma,
            temperature=temperature,
        )


class RMIAOnline(RMIAOffline):
    """Zarifzadeh et al. 2024, online: reference models that did and did not train on it."""

    name = "rmia-online"
    online = True

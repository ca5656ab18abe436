"""MI-Face as an attack plug-in: white-box where the weights are visible, else through queries."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from sklearn.neural_network import MLPClassifier

from fedpriv.attacks.base import Attack
from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.estimate import QUICK, Estimate, seconds_per_call
from fedpriv.attacks.metrics import image_metrics
from fedpriv.attacks.model_inversion import Query, mi_face
from fedpriv.attacks.results import (
    AttackResult,
    Family,
    LabelInversion,
    ModelInversionMetrics,
    Status,
)
from fedpriv.attacks.settings import MIFaceSettings
from fedpriv.attacks.views import Capability, OutsiderView, SightView, View

# Iterations timed per label to estimate the attack (patience and threshold off).
TIMED_ITERATIONS = 4


class MIFace(Attack):
    """Fredrikson et al. 2015: invert each label of the model into a representative image.

    Scored by a classifier trained separately on records that trained no federated model
    (is the inversion recognized as its label?) and by SSIM to the class mean.
    """

    name = "mi-face"
    family = Family.MODEL_INVERSION
    uses = ("mi_face", "outsider_output", "colluders")
    requirements = (
        frozenset({Capability.WHITE_BOX_MODEL}),
        frozenset({Capability.QUERY_PROBABILITIES}),
    )

    def _target(
        self, context: AttackContext, view: View, needs: frozenset[Capability]
    ) -> tuple[MIFaceSettings, torch.nn.Module | None, Query | None]:
        """The settings in the mode ``needs`` allows, and the model or query it inverts."""
        white_box = Capability.WHITE_BOX_MODEL in needs
        mode = "white-box" if white_box else "black-box"
        settings = dataclasses.replace(context.settings.mi_face, mode=mode)
        if white_box and isinstance(view, SightView):
            return settings, view.final_model(), None
        if isinstance(view, OutsiderView):
            return settings, None, view.query
        return settings, None, None

    def estimate(
        self, context: AttackContext, view: View, needs: frozenset[Capability]
    ) -> Estimate:
        """Every label's iterations (at most: patience stops most sooner), a few timed."""
        settings, model, query = self._target(context, view, needs)
        timed = dataclasses.replace(
            settings, iterations=TIMED_ITERATIONS, patience=TIMED_ITERATIONS, cost_threshold=0.0
        )
        shape = context.dataset.input_shape
        asked = view.queries if isinstance(view, OutsiderView) else 0
        per_iteration = (
            seconds_per_call(lambda: mi_face(0, shape, timed, model=model, query=query))
            / TIMED_ITERATIONS
        )
        if isinstance(view, OutsiderView):
            view.queries = asked  # timing is not attacking: results count the attacks' queries
        iterations = settings.iterations
        if settings.mode == "black-box":
            queries = 2 * int(np.prod(shape)) + 1
            iterations = min(iterations, max(1, settings.query_budget // queries))
        labels = context.dataset.num_classes
        basis = (
            f"{labels} labels x at most {iterations:,} iterations at {per_iteration * 1000:.1f} ms"
        )
        return Estimate(QUICK.seconds + labels * iterations * per_iteration, basis, bound=True)

    def run(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> AttackResult:
        """Invert every label; score the inversions."""
        dataset = context.dataset
        settings, model, query = self._target(context, view, needs)
        inversions = []
        for label in range(dataset.num_classes):
            inversions.append(
                mi_face(label, dataset.input_shape, settings, model=model, query=query)
            )
            context.progress(self.name, (label + 1) / dataset.num_classes)
        images = np.stack([r.image for r in inversions])
        predicted = self._evaluation_classifier(context).predict(images.reshape(len(images), -1))
        means = np.stack([dataset.x[dataset.y == r.label].mean(axis=0) for r in inversions])
        ssim = [image_metrics(r.image, m).ssim for r, m in zip(inversions, means, strict=True)]
        np.savez_compressed(
            context.rundir.attack_file(context.threat, self.name, "-images.npz"),
            truth=means,
            reconstruction=images,
        )
        return AttackResult(
            self.name,
            context.threat,
            self.family,
            Status.SCORED,
            metrics=ModelInversionMetrics(
                eval_accuracy=float(np.mean(predicted == np.arange(len(inversions)))),
                ssim_to_class_mean=float(np.mean(ssim)),
                mean_cost=float(np.mean([r.cost for r in inversions])),
            ),
            settings=settings.to_dict(),
            labels=[
                LabelInversion(r.label, r.cost, r.iterations, r.queries, r.stopped_by)
                for r in inversions
            ],
            figure=f"{self.name}.png",
        )

    @staticmethod
    def _evaluation_classifier(context: AttackContext) -> MLPClassifier:
        """A classifier trained separately, on records that trained no federated model."""
        held_out = ~context.truth.member
        if held_out.sum() < 10 * context.dataset.num_classes:
            held_out = np.ones_like(held_out)
        x = context.truth.x[held_out].reshape(int(held_out.sum()), -1)
        return MLPClassifier((128,), max_iter=500, random_state=0).fit(x, context.truth.y[held_out])

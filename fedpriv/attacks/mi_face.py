"""MI-Face as an attack plug-in: white-box where the weights are visible, else through queries."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from sklearn.neural_network import MLPClassifier

from fedpriv.attacks.base import Attack
from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.metrics import image_metrics
from fedpriv.attacks.model_inversion import mi_face
from fedpriv.attacks.results import (
    AttackResult,
    Family,
    LabelInversion,
    ModelInversionMetrics,
    Status,
)
from fedpriv.attacks.views import Capability, OutsiderView, SightView, View


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

    def run(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> AttackResult:
        """Invert every label; score the inversions."""
        dataset = context.dataset
        white_box = Capability.WHITE_BOX_MODEL in needs
        mode = "white-box" if white_box else "black-box"
        settings = dataclasses.replace(context.settings.mi_face, mode=mode)
        model: torch.nn.Module | None = None
        query = None
        if white_box and isinstance(view, SightView):
            model = view.final_model()
        elif isinstance(view, OutsiderView):
            query = view.query
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

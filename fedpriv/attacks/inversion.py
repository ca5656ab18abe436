"""Gradient inversion as attack plug-ins: Inverting Gradients, DLG and iDLG on observed updates.

One module: the three attacks differ only in their method; what they invert, how long that
takes and how it is scored are one piece of code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from fedpriv.attacks.base import Attack
from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.estimate import Estimate
from fedpriv.attacks.gradient_inversion import (
    LocalRecipe,
    invert,
    matching_evaluations,
    matching_seconds,
)
from fedpriv.attacks.metrics import (
    RECOVERED_PSNR,
    ImageScore,
    image_metrics,
    match_reconstructions,
)
from fedpriv.attacks.results import (
    AttackResult,
    ClientReconstruction,
    Family,
    ReconstructionMetrics,
    Status,
)
from fedpriv.attacks.views import (
    Capability,
    MaliciousServerView,
    NotApplicable,
    SightView,
    View,
)
from fedpriv.device import torch_device
from fedpriv.models import build_model
from fedpriv.parameters import state_to_vector
from fedpriv.schemes.sight import ObservedUpdate

# What was inverted, as results record it, by the capability the attack ran with.
TARGETS = {
    Capability.CLIENT_UPDATES: "client updates",
    Capability.AGGREGATE_UPDATES: "round aggregates",
    Capability.ISOLATED_UPDATE: "the target's update, isolated from the aggregate",
}


def _target(needs: frozenset[Capability]) -> str:
    return next(TARGETS[c] for c in TARGETS if c in needs)


def recovered_share(scores: list[ImageScore], records: int) -> float:
    """Share of a client's ``records`` reconstructed at >= :data:`RECOVERED_PSNR` dB."""
    return sum(s.psnr >= RECOVERED_PSNR for s in scores) / max(records, 1)


# Pairs of (truth, reconstruction) kept per client for the report's grids.
GRID_PER_CLIENT = 4


def _client_order(update: ObservedUpdate) -> tuple[bool, int, int]:
    """Partition order where the view knows it (node ids are random per run), else node id."""
    return (update.partition_id is None, update.partition_id or 0, update.node)


@dataclass(frozen=True)
class Targets:
    """The updates a gradient inversion attacks, and how it found them.

    Attributes
    ----------
    updates : list[ObservedUpdate]
        What is inverted, in order.
    rounds : list[int]
        The rounds they come from.
    ignored : tuple[str, ...]
        Parameters left out of the matching (a malicious server's isolated update mixes
        others' output bias into them).
    adversary : dict[str, str]
        What a deviating server did to obtain them (recorded in the result).

    """

    updates: list[ObservedUpdate]
    rounds: list[int]
    ignored: tuple[str, ...] = ()
    adversary: dict[str, str] = field(default_factory=dict)


class GradientInversion(Attack):
    """Reconstruct a client's records from its update (``before - after`` of local training).

    The attacker knows the recipe the server configured and simulates it on dummy records
    (:mod:`fedpriv.attacks.gradient_inversion`). Each attacked update is scored against its
    client's true records after Hungarian matching; a client whose optimization diverged is
    recorded as such and left out of the mean.

    A party that reads only each round's aggregate (SecAgg+'s or threshold CKKS's server)
    inverts that instead, as one client's update of ``max_images`` records, scored against
    every client's records (node 0 in the result stands for the aggregate).
    """

    family = Family.RECONSTRUCTION
    requirements = (
        frozenset({Capability.CLIENT_UPDATES}),
        frozenset({Capability.AGGREGATE_UPDATES}),
        frozenset({Capability.ISOLATED_UPDATE}),
    )
    uses = ("inversion", "rounds", "max_clients", "colluders")
    method: ClassVar[str]

    def targets(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> Targets:
        """The updates this attack inverts on ``view`` with ``needs``, and how it found them."""
        if not isinstance(view, SightView):
            raise NotApplicable(f"the {view.threat} view holds no client update")
        config = context.config
        rounds = [r for r in context.settings.rounds if r in view.rounds]
        if Capability.ISOLATED_UPDATE in needs:
            assert isinstance(view, MaliciousServerView)
            record, isolated = view.isolated()
            update = ObservedUpdate(
                record.server_round,
                record.target_node,
                state_to_vector(isolated.before),
                state_to_vector(isolated.after),
                # The server configured the recipe, and with it any cap on records.
                config.max_train_samples or None,
                record.plan.target,
            )
            return Targets(
                [update], [record.server_round], isolated.ignored, {"adversary": str(record.plan)}
            )
        if Capability.CLIENT_UPDATES in needs:
            cap = context.settings.max_clients or None  # 0: every client of the round
            updates = [u for r in rounds for u in sorted(view.updates(r), key=_client_order)[:cap]]
        else:
            updates = view.aggregates(rounds)
        if not updates:
            raise NotApplicable(f"no update in rounds {list(context.settings.rounds)}")
        return Targets(updates, rounds)

    def _recipe(self, context: AttackContext, update: ObservedUpdate) -> LocalRecipe:
        config = context.config
        return LocalRecipe(
            config.learning_rate,
            config.momentum,
            config.local_epochs,
            config.batch_size,
            update.num_examples or context.settings.inversion.max_images,
        )

    def _model(self, context: AttackContext) -> torch.nn.Module:
        dataset = context.dataset
        return build_model(
            context.config.model,
            dataset.input_shape,
            dataset.num_classes,
            normalization=dataset.normalization,
        )

    def estimate(
        self, context: AttackContext, view: View, needs: frozenset[Capability]
    ) -> Estimate:
        """Matching steps of every start on every target, timed on the first target's shape.

        Updates with the same record count and recipe cost the same per step; one is timed
        per distinct shape.
        """
        settings = dataclasses.replace(context.settings.inversion, method=self.method)
        updates = self.targets(context, view, needs).updates
        per_start, bound = matching_evaluations(settings)
        timed: dict[LocalRecipe, float] = {}
        seconds = 0.0
        for update in updates:
            recipe = self._recipe(context, update)
            if recipe not in timed:
                timed[recipe] = matching_seconds(
                    self._model(context),
                    update.before,
                    recipe,
                    context.dataset.input_shape,
                    context.dataset.num_classes,
                    settings,
                    torch_device(context.config.device),
                )
            seconds += timed[recipe] * per_start * settings.restarts
        step = max(timed.values())
        basis = (
            f"{len(updates)} update{'s' if len(updates) != 1 else ''} x {settings.restarts} "
            f"starts x {'at most ' if bound else ''}{per_start:,} matching steps at "
            f"{step * 1000:.1f} ms"
        )
        return Estimate(seconds, basis, bound=bound)

    def run(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> AttackResult:
        """Invert every selected client's update of the selected rounds."""
        settings = dataclasses.replace(context.settings.inversion, method=self.method)
        targets = self.targets(context, view, needs)
        updates, rounds = targets.updates, targets.rounds
        dataset = context.dataset
        clients: list[ClientReconstruction] = []
        truths, reconstructions = [], []
        for index, update in enumerate(updates):
            rec = invert(
                self._model(context),
                update.before,
                update.after,
                self._recipe(context, update),
                dataset.input_shape,
                dataset.num_classes,
                settings,
                targets.ignored,
                torch_device(context.config.device),
            )
            candidates = context.candidate_records(update.partition_id)
            pairs = match_reconstructions(rec.images, context.truth.x[candidates])
            scores = [
                image_metrics(rec.images[i], context.truth.x[candidates[j]]) for i, j in pairs
            ]
            labels_ok = [int(rec.labels[i] == context.truth.y[candidates[j]]) for i, j in pairs]
            # A diverged optimization's images mean nothing: no score is recorded for them.
            unscored = math.nan if rec.diverged else None
            clients.append(
                ClientReconstruction(
                    round=update.server_round,
                    node=update.node,
                    num_examples=update.num_examples,
                    reconstructed=len(rec.images),
                    matching_loss=None if rec.diverged else rec.loss,
                    mse=unscored or float(np.mean([s.mse for s in scores])),
                    psnr=unscored or float(np.mean([s.psnr for s in scores])),
                    ssim=unscored or float(np.mean([s.ssim for s in scores])),
                    label_accuracy=unscored or float(np.mean(labels_ok)),
                    # A client's own records where the view knows whose update it is;
                    # else the records its reconstructions were matched to.
                    recovered=unscored
                    or recovered_share(
                        scores, len(candidates) if update.partition_id is not None else len(pairs)
                    ),
                    attempts=rec.attempts,
                    diverged=rec.diverged,
                )
            )
            for i, j in pairs[:GRID_PER_CLIENT]:
                reconstructions.append(rec.images[i])
                truths.append(context.truth.x[candidates[j]])
            context.progress(self.name, (index + 1) / len(updates))
        np.savez_compressed(
            context.rundir.attack_file(context.threat, self.name, "-images.npz"),
            truth=np.stack(truths),
            reconstruction=np.stack(reconstructions),
        )
        recorded = {
            **settings.to_dict(),
            "rounds": rounds,
            "max_clients": context.settings.max_clients,
            "target": _target(needs),
            **targets.adversary,
        }
        converged = [c for c in clients if not c.diverged]
        if not converged:
            return AttackResult(
                self.name,
                context.threat,
                self.family,
                Status.DIVERGED,
                reason=f"the optimization diverged on all {len(clients)} updates, "
                f"{2 * settings.restarts} starts each within the budget "
                f"({settings.iterations} iterations per start); nothing is scored",
                settings=recorded,
                clients=clients,
            )
        metrics = ReconstructionMetrics(
            mse=float(np.mean([c.mse for c in converged])),
            psnr=float(np.mean([c.psnr for c in converged])),
            ssim=float(np.mean([c.ssim for c in converged])),
            label_accuracy=float(np.mean([c.label_accuracy for c in converged])),
            recovered_fraction=float(np.mean([c.recovered for c in converged])),
        )
        return AttackResult(
            self.name,
            context.threat,
            self.family,
            Status.SCORED,
            metrics=metrics,
            settings=recorded,
            clients=clients,
            figure=f"{self.name}.png",
        )


class InvertingGradients(GradientInversion):
    """Geiping et al. 2020: cosine matching, total variation, signed Adam."""

    name = "ig"
    method = "ig"


class DLG(GradientInversion):
    """Zhu et al. 2019: L2 matching with L-BFGS, labels optimized jointly."""

    name = "dlg"
    method = "dlg"


class IDLG(GradientInversion):
    """Zhao et al. 2020: DLG with the labels read off the output bias first."""

    name = "idlg"
    method = "idlg"

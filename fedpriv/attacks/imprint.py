"""Fowl et al.'s binning imprint: records read back exactly from a malicious server's layer."""

from __future__ import annotations

import numpy as np

from fedpriv.adversaries.crafting import linear_layers, read_imprint
from fedpriv.adversary import ServerAttack
from fedpriv.attacks.base import Attack
from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.inversion import GRID_PER_CLIENT, recovered_share
from fedpriv.attacks.metrics import image_metrics, match_reconstructions
from fedpriv.attacks.results import (
    AttackResult,
    ClientReconstruction,
    Family,
    ReconstructionMetrics,
    Status,
)
from fedpriv.attacks.views import Capability, MaliciousServerView, NotApplicable, View


class Imprint(Attack):
    """Read the target's records off the imprint layer of its isolated update.

    Fowl et al., "Robbing the Fed: Directly Obtaining Private Data in Federated Learning
    with Modified Models", ICLR 2022. The malicious server sent the target a first layer of
    brightness bins (:func:`fedpriv.adversaries.crafting.imprint_model`) and isolated its
    update from the aggregate; each bin one record fell in gives that record back. Scored
    as the share of the target's records recovered at >= 30 dB PSNR (after Hungarian
    matching), with their mean PSNR and SSIM.
    """

    name = "imprint"
    family = Family.RECONSTRUCTION
    requirements = (frozenset({Capability.ISOLATED_UPDATE}),)

    def run(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> AttackResult:
        """Read every bin of the target's first-layer update; score against its records."""
        assert isinstance(view, MaliciousServerView)
        record, isolated = view.isolated()
        if record.plan.attack != ServerAttack.IMPRINT:
            raise NotApplicable(
                f"the server played {record.plan.attack}, not an imprint: rerun with "
                "--adversary malicious-server:imprint"
            )
        (w1, b1), *_ = linear_layers(isolated.before)
        images = read_imprint(
            isolated.before[w1] - isolated.after[w1], isolated.before[b1] - isolated.after[b1]
        )
        images = images.reshape(len(images), *context.dataset.input_shape)
        if context.dataset.normalization is not None:  # the layer read normalized inputs
            images = context.dataset.normalization.denormalize(images)
        images = np.clip(images, 0.0, 1.0)
        candidates = context.candidate_records(record.plan.target)
        truth = context.truth.x[candidates]
        pairs = match_reconstructions(images, truth) if len(images) else []
        scores = [image_metrics(images[i], truth[j]) for i, j in pairs]
        recovered = recovered_share(scores, len(candidates))
        psnr = float(np.mean([s.psnr for s in scores])) if scores else float("nan")
        ssim = float(np.mean([s.ssim for s in scores])) if scores else float("nan")
        mse = float(np.mean([s.mse for s in scores])) if scores else float("nan")
        best = sorted(pairs, key=lambda p: -scores[pairs.index(p)].psnr)[: 4 * GRID_PER_CLIENT]
        np.savez_compressed(
            context.rundir.attack_file(context.threat, self.name, "-images.npz"),
            truth=np.stack([truth[j] for _, j in best]) if best else truth[:0],
            reconstruction=np.stack([images[i] for i, _ in best]) if best else truth[:0],
        )
        client = ClientReconstruction(
            round=record.server_round,
            node=record.target_node,
            num_examples=len(candidates),
            reconstructed=len(images),
            matching_loss=None,
            mse=mse,
            psnr=psnr,
            ssim=ssim,
            label_accuracy=float("nan"),
            recovered=recovered,
        )
        return AttackResult(
            self.name,
            context.threat,
            self.family,
            Status.SCORED,
            metrics=ReconstructionMetrics(mse, psnr, ssim, float("nan"), recovered),
            settings={
                "target": record.plan.target,
                "round": record.server_round,
                "bins": int(len(isolated.before[b1]) - 1),
                "share": isolated.share,
                "share_measured": isolated.share_measured,
            },
            clients=[client],
            figure=f"{self.name}.png",
        )

"""Client-level DP under an encrypted sum: clients clip, the server adds noise to the sum."""

from __future__ import annotations

import os

import numpy as np
from flwr.serverapp.strategy import Strategy

from fedpriv.defenses.accounting import ClientSampling
from fedpriv.defenses.base import Defense, Numbers
from fedpriv.defenses.dp import DPSettings, clip_update, noise_share
from fedpriv.defenses.server_noise import DISABLE_NOISE, ServerSideNoise
from fedpriv.narrative import fmt
from fedpriv.parameters import state_to_vector, vector_to_state
from fedpriv.registry import Defense as DefenseName
from fedpriv.training import LocalUpdate

# Above this epsilon a guarantee bounds nothing an attack could measure (issue 19).
MEANINGFUL_EPSILON = 10.0


class ClientLevelDP(Defense):
    """DP-FedAvg (McMahan et al. 2018) with the server's noise added under encryption.

    Each client sends ``w + clip(w_k - w, C)`` with weight 1 (the global model ``w`` is the
    same for every client), so one client changes the sum by at most ``C``; the server adds
    ``N(0, sigma^2 C^2)`` to the sum (:class:`~fedpriv.defenses.server_noise.ServerSideNoise`).
    Under authenticated ckks the server may add nothing to a sum; each of the ``m`` clients
    a round samples adds ``N(0, sigma^2 C^2 / m)`` instead, and the key holders accept no
    sum of fewer than ``m`` uploads.
    """

    name = DefenseName.DP

    def wrap_strategy(self, strategy: Strategy) -> Strategy:
        """The strategy with server-side noise around it."""
        return ServerSideNoise(
            strategy, DPSettings.from_config(self.config), ClientSampling.from_config(self.config)
        )

    def client_update(self, update: LocalUpdate) -> LocalUpdate:
        """The global model plus the clipped update, with weight 1 (a bounded contribution)."""
        start = state_to_vector(update.start)
        step = clip_update(state_to_vector(update.state) - start, self.config.dp_clipping_norm)
        return LocalUpdate(
            vector_to_state(start + step, update.state), update.start, 1.0, update.train_loss
        )

    def noise_contributors(self, sampled: int) -> int | None:
        """Every sampled client adds a share: an authenticated sum must hold all of them."""
        return sampled

    def noise_share(
        self, size: int, contributors: int, server_round: int, sender: int
    ) -> np.ndarray | None:
        """``N(0, sigma^2 C^2 / m)`` per slot (:func:`fedpriv.defenses.dp.noise_share`)."""
        if os.environ.get(DISABLE_NOISE) == "1":
            return np.zeros(size)  # the audit's test fault, as on the server
        return noise_share(
            DPSettings.from_config(self.config), size, contributors, server_round, sender
        )

    def max_total_weight(self, records: int) -> float:
        """Every client (and every DP-audit canary) weighs one."""
        return float(self.config.num_nodes)

    def aggregate_headroom(self) -> float:
        """The server's Gaussian noise, to eight standard deviations."""
        return 8.0 * self.config.dp_noise_multiplier * self.config.dp_clipping_norm

    def narrative(self, arm: Numbers, baseline: Numbers, baseline_name: str) -> list[str]:
        """The privacy spent, what it cost, and whether the epsilon promises anything."""
        cost = arm.get("accuracy_cost")
        epsilon = arm.get("dp_epsilon")
        sampling = ClientSampling.from_config(self.config)
        lines = [
            f"Client-level DP spends epsilon {fmt(epsilon, '.2f')} (delta "
            f"{self.config.dp_delta}; replace-one adjacency, {sampling.sampled} of "
            f"{sampling.population} clients sampled each round without replacement, as the "
            "federation samples) and costs "
            f"{fmt(None if cost is None else 100 * float(cost), '.1f')} accuracy points "
            f"against {baseline_name}."
        ]
        if isinstance(epsilon, int | float) and epsilon > MEANINGFUL_EPSILON:
            lines.append(
                f"An epsilon above {MEANINGFUL_EPSILON:g} promises nothing a reader can rely "
                "on: whatever this arm's attacks show is not the guarantee's doing."
            )
        audited = arm.get("audit_epsilon")
        if audited is not None:
            claimed = arm.get("dp_epsilon")
            within = claimed is not None and float(audited) <= float(claimed)
            lines.append(
                f"The one-run audit with {self.config.dp_canaries} canary clients measures "
                f"epsilon >= {fmt(audited, '.2f')}, "
                + ("within the accountant's claim." if within else "ABOVE the accountant's "
                   "claim: the noise does not reach the model as accounted.")
            )  # fmt: skip
        return lines

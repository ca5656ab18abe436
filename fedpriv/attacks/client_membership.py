"""Client-level membership inference: whether a client (its whole local dataset) took part."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedpriv.attacks.base import Attack
from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.membership import cross_entropy
from fedpriv.attacks.metrics import membership_metrics, roc_points
from fedpriv.attacks.results import AttackResult, Family, Json, Status
from fedpriv.attacks.views import Capability, NotApplicable, OutsiderView, SightView, View
from fedpriv.config import RunConfig
from fedpriv.device import torch_device
from fedpriv.models import load_state
from fedpriv.parameters import vector_to_state
from fedpriv.schemes.sight import ObservedUpdate
from fedpriv.task import client_data, initial_state, new_model

SCORES = frozenset({Capability.QUERY_PROBABILITIES, Capability.POPULATION_DATA})


def _descent(config: RunConfig, before: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The negative full-batch gradient of the loss on ``(x, y)`` at the model ``before``."""
    model = new_model(config)
    load_state(model, vector_to_state(before, initial_state(config)))
    device = torch_device(config.device)
    model.to(device)
    model.zero_grad(set_to_none=True)
    inputs, targets = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    nn.functional.cross_entropy(model(inputs), targets).backward()
    grads = [p.grad for p in model.parameters()]
    return -np.concatenate([g.detach().cpu().numpy().ravel() for g in grads if g is not None])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denominator) if denominator else 0.0


class ClientMembership(Attack):
    """Tell the clients that took part from held-out clients that never did.

    The run must split off ``held-out-clients`` clients' worth of data that never trained.
    Each candidate client (participant or held out) is scored by what the attacker holds:

    * individual updates (a curious plaintext server, a coalition that decrypts): the best
      cosine between an observed update and the candidate data's descent direction at the
      model it started from, averaged over the attacked rounds (a participant's own update
      points along its data's descent);
    * each round's aggregate only (SecAgg+, ckks-threshold): the same cosine with the
      aggregate update;
    * the released model's answers (an outsider): minus the mean loss on the candidate's
      records (a participant's records were trained on).

    ROC AUC and TPR at low FPR are over clients; the counts are in the result.
    """

    name = "client-membership"
    family = Family.CLIENT_MEMBERSHIP
    requirements = (
        frozenset({Capability.CLIENT_UPDATES}),
        frozenset({Capability.AGGREGATE_UPDATES}),
        SCORES,
    )
    uses = ("rounds",)

    def run(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> AttackResult:
        """Score every participant and every held-out client."""
        config = context.config
        if config.held_out_clients < 1:
            raise NotApplicable(
                "the run held out no client to compare the participants with (held-out-clients = 0)"
            )
        candidates = range(config.data_partitions)
        member = np.array([pid < config.num_clients for pid in candidates])
        data = [client_data(config, pid) for pid in candidates]
        settings: dict[str, Json] = {"signal": "", "rounds": list(context.settings.rounds)}
        if SCORES <= needs and isinstance(view, OutsiderView):
            settings["signal"] = "mean loss of the released model on the client's records"
            scores = [
                -float(np.mean(cross_entropy(view.query(d.x_train), d.y_train))) for d in data
            ]
        elif isinstance(view, SightView):
            rounds = [r for r in context.settings.rounds if r in view.rounds]
            if not rounds:
                raise NotApplicable(f"no round of {list(context.settings.rounds)} was recorded")
            if Capability.CLIENT_UPDATES in needs:
                settings["signal"] = "best cosine of an update with the client's descent"
                observed = {r: view.updates(r) for r in rounds}
            else:
                settings["signal"] = "cosine of the round's aggregate with the client's descent"
                observed = {r: view.aggregates([r]) for r in rounds}
            scores = [self._alignment(config, observed, d.x_train, d.y_train) for d in data]
        else:
            raise NotApplicable(f"the {view.threat} view holds nothing to score clients by")
        values = np.asarray(scores, dtype=np.float64)
        settings["participants"] = int(member.sum())
        settings["held_out"] = int((~member).sum())
        return AttackResult(
            self.name,
            context.threat,
            self.family,
            Status.SCORED,
            metrics=membership_metrics(values, member),
            settings=settings,
            roc=roc_points(values, member),
        )

    @staticmethod
    def _alignment(
        config: RunConfig,
        observed: dict[int, list[ObservedUpdate]],
        x: np.ndarray,
        y: np.ndarray,
    ) -> float:
        per_round = []
        for updates in observed.values():
            if not updates:
                continue
            descent = _descent(config, updates[0].before, x, y)
            per_round.append(max(_cosine(u.after - u.before, descent) for u in updates))
        return float(np.mean(per_round)) if per_round else 0.0

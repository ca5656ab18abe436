"""MemGuard (Jia et al., CCS 2019): label-preserving noise on the released model's scores."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedpriv.defenses.base import Defense, Effect, Numbers, ReleasedModel
from fedpriv.errors import ConfigError
from fedpriv.narrative import fmt
from fedpriv.registry import Defense as DefenseName
from fedpriv.task import client_data
from fedpriv.training import model_logits


@dataclass(frozen=True)
class MemGuardSettings:
    """Parameters of both phases.

    Attributes
    ----------
    epsilon : float
        Phase 2's budget: the expected L1 distortion of a confidence vector.
    label_weight : float
        c2: weight of the label-preservation loss in phase 1.
    distortion_weight : float
        c3: weight of the L1 distortion in phase 1.
    steps : int
        Phase 1's largest number of optimization steps.
    tolerance : float
        Phase 1 stops once every query's defense logit is within this of 0 (probability
        0.5) with its label kept.
    step_size : float
        Phase 1's Adam step size (on the logits).
    seed : int
        Seed of the defense classifier and of phase 2's coin (hashed with each query, so a
        repeated query gets the same answer and cannot be averaged out).

    """

    epsilon: float = 1.0
    label_weight: float = 10.0
    distortion_weight: float = 0.1
    steps: int = 300
    tolerance: float = 0.05
    step_size: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epsilon <= 0:
            raise ConfigError(f"memguard-epsilon must be > 0, got {self.epsilon}")
        if self.steps < 1 or self.step_size <= 0:
            raise ConfigError("MemGuard needs steps >= 1 and step_size > 0")
        if self.label_weight < 0 or self.distortion_weight < 0:
            raise ConfigError("MemGuard loss weights must be >= 0")


class DefenseClassifier(nn.Module):
    """The defender's own membership classifier on sorted confidence vectors."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_classes, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
        )

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Logit of membership (0 means 0.5)."""
        ordered = torch.sort(probabilities, dim=1, descending=True).values
        logit: torch.Tensor = self.net(ordered).squeeze(1)
        return logit


def train_defense_classifier(
    member_probs: np.ndarray, nonmember_probs: np.ndarray, seed: int = 0, epochs: int = 300
) -> DefenseClassifier:
    """Fit the defense classifier on the defender's members and non-members (balanced)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = DefenseClassifier(member_probs.shape[1])
    count = min(len(member_probs), len(nonmember_probs))
    x = torch.from_numpy(np.concatenate([member_probs[:count], nonmember_probs[:count]]))
    y = torch.cat([torch.ones(count), torch.zeros(count)])
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(
            classifier(x[order].float()), y[order]
        )
        loss.backward()
        optimizer.step()
    classifier.eval()
    return classifier


class MemGuard:
    """Wraps a model so that every answer goes through MemGuard's two phases."""

    def __init__(
        self, model: nn.Module, classifier: DefenseClassifier, settings: MemGuardSettings
    ) -> None:
        self.model = model.eval()
        self.classifier = classifier
        self.settings = settings
        self.last_distortion = np.zeros(0)

    def phase_one(self, logits: torch.Tensor) -> torch.Tensor:
        """Noise on each confidence vector that drives the defense classifier to 0.5.

        Optimizes a perturbation ``r`` of the logits (so the result stays a probability
        vector) for ``|h(softmax(z + r))| + c2 * label_loss + c3 * ||softmax(z + r) - s||_1``,
        and keeps, per query, the best iterate that preserves the predicted label.
        """
        s = torch.softmax(logits, 1)
        label = logits.argmax(1)
        r = torch.zeros_like(logits, requires_grad=True)
        optimizer = torch.optim.Adam([r], lr=self.settings.step_size)
        best = s.clone()
        best_score = self.classifier(s).abs().detach()
        rows = torch.arange(len(label))
        for _ in range(self.settings.steps):
            optimizer.zero_grad()
            z = logits + r
            p = torch.softmax(z, 1)
            others = z.clone()
            others[rows, label] = -torch.inf
            label_loss = torch.relu(others.max(1).values - z[rows, label])
            h = self.classifier(p)
            loss = (
                h.abs()
                + self.settings.label_weight * label_loss
                + self.settings.distortion_weight * (p - s).abs().sum(1)
            )
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                p = torch.softmax(logits + r, 1)
                kept = p.argmax(1) == label
                score = self.classifier(p).abs()
                # A query's answer is frozen once within tolerance, so it does not depend on
                # which other queries share its batch (a repeated query gets the same answer).
                settled = best_score < self.settings.tolerance
                better = kept & (score < best_score) & ~settled
                best[better] = p[better]
                best_score = torch.where(better, score, best_score)
                if bool((best_score < self.settings.tolerance).all()):
                    break
        return best - s

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Answer queries with defended probability vectors."""
        logits = model_logits(self.model, x)
        s = torch.softmax(logits, 1)
        with torch.enable_grad():
            noise = self.phase_one(logits.detach())
        l1 = noise.abs().sum(1).numpy()
        # Phase 2: add the noise with probability min(epsilon / ||n||_1, 1).
        keep = np.minimum(self.settings.epsilon / np.maximum(l1, 1e-12), 1.0)
        coins = np.array([self._coin(row) for row in np.asarray(x)])
        use = coins < keep
        answer = s.numpy() + noise.numpy() * use[:, None]
        self.last_distortion = np.abs(answer - s.numpy()).sum(1)
        return np.asarray(answer.astype(np.float32))

    def _coin(self, query: np.ndarray) -> float:
        digest = hashlib.sha256(np.ascontiguousarray(query).tobytes()).digest()
        seed = int.from_bytes(digest[:8], "little") ^ self.settings.seed
        return float(np.random.default_rng(seed).random())


class GuardedModel(ReleasedModel):
    """The released model answering through MemGuard."""

    def __init__(self, guard: MemGuard) -> None:
        super().__init__(guard.model)
        self.guard = guard

    def describe(self) -> dict[str, float | str] | None:
        """MemGuard and its budget; it keeps every predicted label."""
        return {
            "name": "memguard",
            "epsilon": self.guard.settings.epsilon,
            "note": "MemGuard keeps every predicted label, so it cannot change what a "
            "label-only attack sees",
        }

    def answer(self, x: np.ndarray) -> np.ndarray:
        """Defended probability vectors; their L1 distortion is recorded."""
        probabilities = self.guard(x)
        self.distortion.extend(self.guard.last_distortion.tolist())
        return probabilities


class MemGuardDefense(Defense):
    """MemGuard in front of the released model, as the key holders would deploy it."""

    name = DefenseName.MEMGUARD

    def released(self, model: nn.Module) -> ReleasedModel:
        """The model behind MemGuard, trained on the defender's own data.

        The defender knows its data: it trains the defense classifier on the model's answers
        for training records (members) and the clients' test records (non-members).
        """
        config = self.config
        members, held_out = [], []
        for pid in range(config.num_clients):
            data = client_data(config, pid)
            members.append(data.x_train)
            held_out.append(data.x_test)
        member_probs = torch.softmax(model_logits(model, np.concatenate(members)), 1)
        held_out_probs = torch.softmax(model_logits(model, np.concatenate(held_out)), 1)
        settings = MemGuardSettings(epsilon=config.memguard_epsilon, seed=config.seed)
        rng = np.random.default_rng(config.seed)
        shuffled = member_probs.numpy()[rng.permutation(len(member_probs))]
        classifier = train_defense_classifier(shuffled, held_out_probs.numpy(), seed=config.seed)
        return GuardedModel(MemGuard(model, classifier, settings))

    def narrative(self, arm: Numbers, baseline: Numbers, baseline_name: str) -> list[str]:
        """What the perturbation did to the label-blind and the label-aware attacks."""
        return [
            f"MemGuard (Jia et al., CCS 2019) perturbs confidence scores (mean L1 distortion "
            f"{fmt(arm.get('memguard_l1'))}) to fool attack classifiers that read the scores "
            "without the record's label; attacks that use the label (loss, LiRA, RMIA, "
            "label-only) are not what it is built against (Song and Mittal, USENIX Security "
            f"2021). The strongest label-blind attack ({arm.get('label_blind_attack')}) reaches "
            f"AUC {fmt(arm.get('label_blind_auc'))} here against "
            f"{fmt(baseline.get('label_blind_auc'))} without it; the strongest label-aware one "
            f"({arm.get('label_aware_attack')}) {fmt(arm.get('label_aware_auc'))} against "
            f"{fmt(baseline.get('label_aware_auc'))}. It keeps every predicted label, so the "
            f"label-only attack cannot change (AUC {fmt(arm.get('label_only_auc'))})."
        ]

    def effects(self) -> tuple[Effect, ...]:
        """What MemGuard takes off each family's strongest AUC on the same model, paired."""
        return (
            Effect(
                "label_blind_auc_drop",
                "MemGuard's drop of the strongest label-blind AUC on the same model",
                paired=True,
            ),
            Effect(
                "label_aware_auc_drop",
                "MemGuard's drop of the strongest label-aware AUC on the same model",
                paired=True,
            ),
        )

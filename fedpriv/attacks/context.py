"""What the attacks of one invocation share: ground truth, the candidate pool, shadow models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedpriv.attacks.membership import ShadowSet, train_shadows
from fedpriv.attacks.results import Threat
from fedpriv.attacks.settings import SuiteSettings
from fedpriv.attacks.views import NotApplicable
from fedpriv.config import RunConfig
from fedpriv.data.datasets import Dataset, load_dataset
from fedpriv.rundir import RunDirectory
from fedpriv.task import client_data

# Reports progress: (what, fraction done).
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Truth:
    """Ground truth that scores attacks (never shown to an attacker)."""

    x: np.ndarray
    y: np.ndarray
    member: np.ndarray
    train_indices: dict[int, np.ndarray]


def ground_truth(config: RunConfig) -> Truth:
    """Which records trained the global model, and each partition's training records."""
    dataset = load_dataset(config.dataset)
    member = np.zeros(len(dataset), dtype=bool)
    train_indices = {}
    for pid in range(config.num_clients):
        indices = client_data(config, pid).train_indices
        member[indices] = True
        train_indices[pid] = indices
    return Truth(dataset.x, dataset.y, member, train_indices)


@dataclass(frozen=True)
class CandidatePool:
    """The records a membership attacker tests: members and non-members, drawn once."""

    indices: np.ndarray
    is_member: np.ndarray
    train_size: int


class AttackContext:
    """State shared by the attacks of one invocation on one run and threat.

    Parameters
    ----------
    run_dir : Path
        The run.
    threat : Threat
        Whose view the attacks use.
    settings : SuiteSettings
        Budgets and selections.
    progress : Progress | None
        Called with (what, fraction done) as attacks advance.

    """

    def __init__(
        self,
        run_dir: Path,
        threat: Threat,
        settings: SuiteSettings,
        progress: Progress | None = None,
    ) -> None:
        self.rundir = RunDirectory(run_dir)
        self.threat = threat
        self.settings = settings
        self.progress: Progress = progress or (lambda _name, _fraction: None)
        self.config = self.rundir.read_config()
        self.dataset: Dataset = load_dataset(self.config.dataset)
        self.truth = ground_truth(self.config)
        self._pool: CandidatePool | None = None
        self._shadows: ShadowSet | None = None
        self.rundir.attack_dir(threat).mkdir(parents=True, exist_ok=True)

    def candidate_records(self, partition_id: int | None) -> np.ndarray:
        """The records an update may come from: its client's, or every client's if unknown."""
        if partition_id is not None and partition_id in self.truth.train_indices:
            return self.truth.train_indices[partition_id]
        return np.flatnonzero(self.truth.member)

    def pool(self) -> CandidatePool:
        """Members and non-members for membership inference (drawn once, seeded)."""
        if self._pool is None:
            rng = np.random.default_rng(self.settings.membership.seed)
            members = np.flatnonzero(self.truth.member)
            others = np.flatnonzero(~self.truth.member)
            if len(others) == 0:
                raise NotApplicable("every record trained the model: no non-member to test")
            limit = self.settings.membership.max_targets
            members = rng.choice(members, size=min(limit, len(members)), replace=False)
            others = rng.choice(others, size=min(2 * limit, len(others)), replace=False)
            indices = np.concatenate([members, others])
            self._pool = CandidatePool(
                indices, self.truth.member[indices], int(self.truth.member.sum())
            )
        return self._pool

    def shadows(self) -> ShadowSet:
        """Shadow models trained once for every shadow-based attack of the invocation."""
        if self._shadows is None:
            pool = self.pool()
            total = self.settings.membership.num_shadows
            self._shadows = train_shadows(
                self.config,
                self.truth.x[pool.indices],
                self.truth.y[pool.indices],
                min(pool.train_size, len(pool.indices) // 2),
                self.dataset.num_classes,
                self.settings.membership,
                progress=lambda done: self.progress("shadow models", done / total),
            )
        return self._shadows

"""What the attacks of one invocation share: ground truth, the candidate pool, shadow models."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fedpriv.attacks.estimate import Estimate, seconds_per_call
from fedpriv.attacks.membership import ShadowSet, train_shadows
from fedpriv.attacks.results import Threat
from fedpriv.attacks.settings import SuiteSettings
from fedpriv.attacks.views import NotApplicable
from fedpriv.config import RunConfig
from fedpriv.data.app_data import app_records
from fedpriv.data.cache import cached_arrays, entry_path
from fedpriv.data.datasets import Dataset, load_dataset
from fedpriv.device import torch_device
from fedpriv.provenance import code_digest
from fedpriv.registry import APP_DATA_PREFIX
from fedpriv.rundir import RunDirectory
from fedpriv.task import client_data, new_model, run_dataset
from fedpriv.training import train

# The work the shadow-based attacks share (:attr:`Estimate.shared`).
SHADOWS = "shadow models"
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
    """Which records trained the global model, and each partition's training records.

    A run recorded from a Flower app (an ``app:`` dataset) trained on every record its
    loader gives each partition: there is no non-member, so membership attacks do not apply.
    """
    if config.dataset.startswith(APP_DATA_PREFIX):
        dataset, parts = app_records(config.dataset, config.num_clients)
        members = np.ones(len(dataset), dtype=bool)
        return Truth(dataset.x, dataset.y, members, dict(enumerate(parts)))
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
    config : RunConfig | None
        The run's configuration as the attacker takes it (default: the run's own).

    """

    def __init__(
        self,
        run_dir: Path,
        threat: Threat,
        settings: SuiteSettings,
        progress: Progress | None = None,
        config: RunConfig | None = None,
    ) -> None:
        self.rundir = RunDirectory(run_dir)
        self.threat = threat
        self.settings = settings
        self.progress: Progress = progress or (lambda _name, _fraction: None)
        self.config = config or self.rundir.read_config()
        self.dataset: Dataset = run_dataset(self.config)
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

    def _shadow_plan(self) -> tuple[CandidatePool, int, str]:
        """The pool, each shadow's training-set size, and the shadows' disk-cache key.

        The shadows depend on the pool, the recipe and the settings only, not on the scheme
        or the defense: runs that share those (the arms of a comparison) share one entry.
        """
        pool = self.pool()
        train_size = min(pool.train_size, len(pool.indices) // 2)
        config = self.config
        recipe = [
            config.dataset,
            config.model,
            config.num_clients,
            config.fraction_train,
            config.num_server_rounds,
            config.local_epochs,
            config.batch_size,
            config.learning_rate,
            config.momentum,
        ]
        digest = hashlib.sha256(
            json.dumps([recipe, asdict(self.settings.membership), train_size]).encode()
            + pool.indices.tobytes()
            + code_digest("fedpriv").encode()
        ).hexdigest()[:24]
        return pool, train_size, f"shadows-{digest}"

    def shadows(self) -> ShadowSet:
        """Shadow models trained once for every shadow-based attack (cached on disk)."""
        if self._shadows is None:
            pool, train_size, key = self._shadow_plan()
            total = self.settings.membership.num_shadows

            def build() -> dict[str, np.ndarray]:
                shadows = train_shadows(
                    self.config,
                    self.truth.x[pool.indices],
                    self.truth.y[pool.indices],
                    train_size,
                    self.dataset.num_classes,
                    self.settings.membership,
                    progress=lambda done: self.progress("shadow models", done / total),
                )
                return {"probabilities": shadows.probabilities, "included": shadows.included}

            arrays, _ = cached_arrays(key, build, {"probabilities", "included"})
            self._shadows = ShadowSet(arrays["probabilities"], arrays["included"])
        return self._shadows

    def shadows_estimate(self) -> Estimate:
        """Seconds :meth:`shadows` will take: none when cached, else their training, timed.

        One shadow trains on ``train_size`` records as the target federation trained
        (:func:`~fedpriv.attacks.membership.train_federated`: every round, the sampled
        clients' local epochs) or for ``shadow_epochs`` epochs; a few mini-batch steps of
        the run's model are timed and multiplied by the records every shadow passes.
        """
        pool, train_size, key = self._shadow_plan()
        if self._shadows is not None or entry_path(key).is_file():
            return Estimate(0.0, "shadow models cached", shared=SHADOWS)
        settings, config = self.settings.membership, self.config
        if settings.shadow_epochs:
            passes = float(settings.shadow_epochs)
        else:
            clients = max(1, config.num_clients)
            sampled = min(clients, max(1, int(clients * config.fraction_train)))
            passes = config.num_server_rounds * config.local_epochs * sampled / clients
        batch = min(train_size, 4 * config.batch_size)
        x, y = self.truth.x[pool.indices[:batch]], self.truth.y[pool.indices[:batch]]
        model = new_model(self.config)

        def train_batch() -> None:
            train(
                model,
                x,
                y,
                1,
                config.batch_size,
                config.learning_rate,
                config.momentum,
                device=torch_device(config.device),
            )

        per_record = seconds_per_call(train_batch) / max(batch, 1)
        records = passes * train_size
        seconds = settings.num_shadows * records * per_record
        basis = (
            f"{settings.num_shadows} shadow models x {records:,.0f} record passes at "
            f"{per_record * 1e6:,.0f} us"
        )
        return Estimate(seconds, basis, shared=SHADOWS)

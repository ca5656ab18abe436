"""Threat-model views: exactly what the curious server, a colluding client and an outsider see."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedpriv.config import RunConfig
from fedpriv.crypto.keys import load_client_context
from fedpriv.crypto.packing import decrypt_vector, decrypt_weighted_mean
from fedpriv.crypto.presets import get_preset
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.memguard import MemGuard, MemGuardSettings, train_defense_classifier
from fedpriv.errors import FedprivError
from fedpriv.models import load_state, state_to_vector
from fedpriv.rundir import RunDirectory
from fedpriv.task import client_data, initial_state, new_model
from fedpriv.wire import record_to_state

THREATS = ("curious-server", "outsider", "colluding-client")


class NotApplicable(FedprivError):
    """The attacker's view cannot provide what the attack needs; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ObservedUpdate:
    """One client's contribution to a round, as an attacker reconstructs it.

    ``before`` is the global model the client started from and ``after`` its locally trained
    model, both flat vectors in the model's state-dict order.
    """

    server_round: int
    node: int
    before: np.ndarray
    after: np.ndarray
    num_examples: int | None
    partition_id: int | None


class ServerView:
    """The curious server: ``server_view/`` and a parameters-only context, nothing else."""

    threat = "curious-server"

    def __init__(self, run_dir: str | Path) -> None:
        self.rundir = RunDirectory(run_dir)
        self.config = RunConfig.from_flower(self.rundir.read_config())
        self.rounds = self.rundir.checkpoint_rounds()

    def _encrypted(self) -> bool:
        return self.config.aggregation == "ckks"

    def check_plaintext_updates(self) -> None:
        """Raise :class:`NotApplicable` when this view holds no individual update."""
        if self._encrypted():
            raise NotApplicable(
                "ciphertext only: the server holds CKKS ciphertexts and no key, so no "
                "individual update (or global model) is visible to it"
            )
        if self.config.aggregation == "secagg":
            raise NotApplicable(
                "masked vectors only: under SecAgg+ each update reaches the server with "
                "pairwise masks that cancel only in the sum"
            )
        if not self.rounds or not (self.rundir.path / "server_view").is_dir():
            raise NotApplicable("the run recorded no server view (record-server-view=false)")

    def global_model(self, server_round: int) -> np.ndarray:
        """The global model broadcast at the start of ``server_round`` (flat)."""
        self.check_plaintext_updates()
        sent = self.rundir.read_sent(server_round)
        return state_to_vector(record_to_state(sent["arrays"]))

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every client update the server received in ``server_round``."""
        self.check_plaintext_updates()
        before = self.global_model(server_round)
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            content = self.rundir.read_payload(path)
            metrics = next(iter(content.metric_records.values()), {})
            observed.append(
                ObservedUpdate(
                    server_round=server_round,
                    node=int(name.rsplit("-", 1)[1]),
                    before=before,
                    after=state_to_vector(record_to_state(content["arrays"])),
                    num_examples=_int_or_none(metrics.get("num-examples")),
                    partition_id=_int_or_none(metrics.get("partition-id")),
                )
            )
        return observed

    def final_model(self) -> torch.nn.Module:
        """The last global model this view holds in plaintext (SecAgg+ reveals the sum)."""
        if self.config.aggregation != "secagg":
            self.check_plaintext_updates()
        model = new_model(self.config)
        load_state(model, record_to_state(self.rundir.read_checkpoint(self.rounds[-1])["arrays"]))
        return model


class ColludingClientView(ServerView):
    """A client that shares the secret key with the server: decrypts everything the server saw."""

    threat = "colluding-client"

    def __init__(self, run_dir: str | Path, key_dir: str | Path | None = None) -> None:
        super().__init__(run_dir)
        if self._encrypted():
            self.context = load_client_context(key_dir or self.config.key_dir)
            self.preset = get_preset(self.config.ckks_preset)

    def check_plaintext_updates(self) -> None:
        """A colluder can read every update; only a missing server view stops it."""
        if self.config.aggregation == "secagg":
            raise NotApplicable(
                "SecAgg+ has no shared key: unmasking another client's update needs "
                f"{self.config.secagg_reconstruction_threshold} colluding share holders"
            )
        if not self.rounds or not (self.rundir.path / "server_view").is_dir():
            raise NotApplicable("the run recorded no server view (record-server-view=false)")

    def global_model(self, server_round: int) -> np.ndarray:
        """The global model at the start of ``server_round``, decrypted under ckks."""
        if not self._encrypted():
            return super().global_model(server_round)
        if server_round == 1:
            return state_to_vector(initial_state(self.config))  # clients start from the seed
        sent = self.rundir.read_sent(server_round)
        return decrypt_weighted_mean(sent["arrays"], self.context, self.preset)[0]

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every client's update, decrypted: ``n_k w_k / n_k`` and ``n_k`` itself."""
        if not self._encrypted():
            return super().updates(server_round)
        self.check_plaintext_updates()
        before = self.global_model(server_round)
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            payload = decrypt_vector(
                self.rundir.read_payload(path)["arrays"], self.context, self.preset
            )
            weight = float(payload[-1])
            observed.append(
                ObservedUpdate(
                    server_round=server_round,
                    node=int(name.rsplit("-", 1)[1]),
                    before=before,
                    after=payload[:-1] / weight,
                    num_examples=round(weight),
                    partition_id=None,
                )
            )
        return observed

    def final_model(self) -> torch.nn.Module:
        """The released global model."""
        model = new_model(self.config)
        model.load_state_dict(self.rundir.read_model())
        return model


class OutsiderView:
    """Query access to the released model, plus data from the same population.

    Parameters
    ----------
    run_dir : str | Path
        The run whose ``model.pt`` is queried.
    output : str
        ``probabilities`` (full confidence vectors) or ``labels`` (predicted label only).

    """

    threat = "outsider"

    def __init__(self, run_dir: str | Path, output: str = "probabilities") -> None:
        if output not in ("probabilities", "labels"):
            raise FedprivError(f"outsider output must be probabilities or labels, got {output}")
        self.rundir = RunDirectory(run_dir)
        self.config = RunConfig.from_flower(self.rundir.read_config())
        self.output = output
        if not (self.rundir.path / "model.pt").exists():
            raise NotApplicable("no released model (model.pt) to query")
        self._model = new_model(self.config)
        self._model.load_state_dict(self.rundir.read_model())
        self._model.eval()
        self.queries = 0
        self.distortion: list[float] = []
        self.memguard = memguard_for(self._model, self.config) if self.defended else None

    @property
    def defended(self) -> bool:
        """Whether the released model answers through MemGuard."""
        return self.config.defense == "memguard"

    @torch.no_grad()
    def query(self, x: np.ndarray) -> np.ndarray:
        """Answer queries: probability vectors, or predicted labels in label-only mode."""
        self.queries += len(x)
        if self.memguard is not None:
            probabilities = self.memguard(x)
            self.distortion.extend(self.memguard.last_distortion.tolist())
        else:
            probabilities = torch.softmax(self._model(torch.as_tensor(x)), dim=1).numpy()
        return probabilities if self.output == "probabilities" else probabilities.argmax(1)

    def white_box(self) -> torch.nn.Module:
        """The model itself; outsiders get this only when an attack is white-box."""
        return self._model


def memguard_for(model: torch.nn.Module, config: RunConfig) -> MemGuard:
    """MemGuard as the key holders deploy it in front of the released model.

    The defender knows its own data: it trains the defense classifier on the model's answers
    for training records (members) and the clients' test records (non-members).
    """
    members, held_out = [], []
    for pid in range(config.num_clients):
        data = client_data(config, pid, config.num_clients)
        members.append(data.x_train)
        held_out.append(data.x_test)
    with torch.no_grad():
        member_probs = torch.softmax(model(torch.from_numpy(np.concatenate(members))), 1)
        held_out_probs = torch.softmax(model(torch.from_numpy(np.concatenate(held_out))), 1)
    settings = MemGuardSettings(epsilon=config.memguard_epsilon, seed=config.seed)
    rng = np.random.default_rng(config.seed)
    member_probs = member_probs.numpy()[rng.permutation(len(member_probs))]
    classifier = train_defense_classifier(member_probs, held_out_probs.numpy(), seed=config.seed)
    return MemGuard(model, classifier, settings)


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
        indices = client_data(config, pid, config.num_clients).train_indices
        member[indices] = True
        train_indices[pid] = indices
    return Truth(dataset.x, dataset.y, member, train_indices)


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]

"""Single-key CKKS: clients encrypt under one shared key; the server adds what it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Message, RecordDict
from flwr.serverapp.strategy import Strategy

from fedpriv.config import RunConfig
from fedpriv.crypto.keyholder import KeyHolder
from fedpriv.crypto.keys import CLIENT_CONTEXT, check_preset, load_server_context, provision_keys
from fedpriv.crypto.presets import get_preset
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.base import Numbers
from fedpriv.errors import ConfigError, FedprivError
from fedpriv.models import state_from_bytes, state_to_bytes
from fedpriv.narrative import fmt
from fedpriv.parameters import State, state_to_vector, vector_to_state
from fedpriv.registry import Aggregation
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import (
    AggregationScheme,
    ClientCodec,
    DeploymentKeys,
    Evaluation,
    Node,
)
from fedpriv.schemes.sight import Blind, ObservedUpdate, Sight
from fedpriv.strategies.ckks import EVALUATION_STATE, CkksFedAvg
from fedpriv.strategies.sampling import Sampling
from fedpriv.task import initial_state, num_parameters
from fedpriv.training import LocalUpdate
from fedpriv.wire import arrays_of, server_round

CIPHERTEXT_ONLY = (
    "ciphertext only: the server holds CKKS ciphertexts and no key, so no individual update "
    "(or global model) is visible to it"
)


def sum_size(config: RunConfig, num_partitions: int) -> int:
    """How many clients' values can end up in one sum (for the bound check)."""
    return max(config.num_clients, num_partitions)


class CkksCodec(ClientCodec):
    """Decrypt the broadcast sum, divide by the total weight; encrypt ``n_k w_k || n_k``."""

    def __init__(self, config: RunConfig, node: Node) -> None:
        self.config = config
        self.node = node
        self.holder = KeyHolder(node.key_dir, config.ckks_preset)

    def read(self, msg: Message) -> tuple[State, int]:
        """The decrypted mean (round 1: the seed's model, the server holds none)."""
        record = arrays_of(msg.content)
        if len(record) == 0:
            return initial_state(self.config), server_round(msg.content)
        mean, _ = self.holder.decrypt_mean(
            record,
            max_total_weight=len(load_dataset(self.config.dataset)),
            num_values=num_parameters(self.config) + 1,
        )
        return vector_to_state(mean, initial_state(self.config)), server_round(msg.content)

    def train_reply(self, msg: Message, update: LocalUpdate) -> RecordDict:
        """Only ciphertexts: the server learns neither parameters nor the sample count."""
        encrypted = self.holder.encrypt_weighted(
            state_to_vector(update.state),
            update.weight,
            sum_size(self.config, self.node.num_partitions),
        )
        return RecordDict({"arrays": encrypted})

    def evaluate_reply(self, msg: Message, evaluation: Evaluation) -> RecordDict:
        """Encrypted sums: [loss x records, correct predictions, records]."""
        n = evaluation.num_examples
        sums = np.array([evaluation.loss * n, round(evaluation.accuracy * n), n])
        encrypted = self.holder.encrypt(sums, sum_size(self.config, self.node.num_partitions))
        return RecordDict({"metrics": encrypted})


class DecryptingSight(Sight):
    """A key holder reading the server's view: a client colluding with the server."""

    def __init__(self, rundir: RunDirectory, config: RunConfig, holder: KeyHolder) -> None:
        super().__init__(rundir, config)
        self.holder = holder

    def global_model(self, server_round: int) -> np.ndarray:
        """The decrypted global model at the start of ``server_round``."""
        self._require(self.updates_hidden())
        if server_round == 1:
            return state_to_vector(initial_state(self.config))  # clients start from the seed
        sent = self.rundir.read_sent(server_round)
        return self.holder.decrypt_mean(arrays_of(sent))[0]

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every client's update, decrypted: ``n_k w_k / n_k`` and ``n_k`` itself."""
        self._require(self.updates_hidden())
        before = self.global_model(server_round)
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            payload = self.holder.decrypt(arrays_of(self.rundir.read_payload(path)))
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

    def final_state(self) -> State:
        """The released model."""
        return state_from_bytes(self.rundir.model_path.read_bytes())


class CkksScheme(AggregationScheme):
    """CKKS with one secret key shared by every client; the server holds parameters only."""

    name = Aggregation.CKKS
    needs_release = True

    def _key_dir(self) -> str:
        if not self.config.key_dir:
            raise ConfigError("aggregation 'ckks' needs key-dir (see `fedpriv keys new`)")
        return self.config.key_dir

    def provision(self, rundir: RunDirectory) -> RunConfig:
        """Make a key set in ``<run>/keys`` (or the configured ``key-dir``) if none exists."""
        key_dir = Path(self.config.key_dir) if self.config.key_dir else rundir.key_dir
        if not (key_dir / CLIENT_CONTEXT).exists():
            provision_keys(key_dir, self.config.ckks_preset)
        return self.config.replace(key_dir=str(key_dir.resolve()))

    def provision_deployment(self, keys: Path) -> DeploymentKeys | None:
        """The secret-key context for the nodes, parameters only for the server."""
        client, server = keys / "client", keys / "server"
        provision_keys(client, self.config.ckks_preset, server)
        return DeploymentKeys(client, server)

    def check_server(self) -> None:
        """A key directory of this preset, whose server context holds no key."""
        key_dir = self._key_dir()
        check_preset(key_dir, self.config.ckks_preset)
        load_server_context(key_dir)

    def strategy(self) -> tuple[Strategy, ArrayRecord]:
        """CKKS FedAvg on the parameters-only context; no model: clients start from the seed."""
        self.check_server()
        strategy = CkksFedAvg(
            load_server_context(self._key_dir()),
            get_preset(self.config.ckks_preset),
            num_parameters(self.config),
            Sampling.from_config(self.config),
        )
        return strategy, ArrayRecord()

    def resumed(self, strategy: Strategy, arrays: ArrayRecord) -> None:
        """The resumed global sum is what the clients last accepted."""
        if isinstance(strategy, CkksFedAvg):
            strategy.accepted = arrays

    def codec(self, node: Node) -> ClientCodec:
        """Encrypt and decrypt with the node's secret-key context."""
        return CkksCodec(self.config, node)

    def _holder(self, key_dir: str | Path | None) -> KeyHolder:
        return KeyHolder(key_dir or self._key_dir(), self.config.ckks_preset)

    def release(self, rundir: RunDirectory, key_dir: str | Path | None = None) -> None:
        """Decrypt the final model into ``model.pt`` and each round's metrics into the history.

        Needs the clients' secret-key context: only key holders can release.
        """
        holder = self._holder(key_dir)
        rounds = rundir.checkpoint_rounds()
        if not rounds:
            raise FedprivError(f"{rundir.path} has no checkpoint to release")
        history = rundir.read_history()
        for record in history:
            state = rundir.read_checkpoint(record.round)
            if EVALUATION_STATE in state.array_records:
                loss_sum, correct, count = holder.decrypt(arrays_of(state, EVALUATION_STATE))
                if round(count) > 0:
                    record.accuracy = float(correct / count)
                    record.loss = float(loss_sum / count)
        rundir.write_history(history)
        final = arrays_of(rundir.read_checkpoint(rounds[-1]))
        if len(final) == 0:  # no round changed the model: it is still the seed's
            rundir.write_model(state_to_bytes(initial_state(self.config)))
            return
        mean, _ = holder.decrypt_mean(final)
        rundir.write_model(state_to_bytes(vector_to_state(mean, initial_state(self.config))))

    def round_models(
        self, rundir: RunDirectory, key_dir: str | Path | None = None
    ) -> list[np.ndarray]:
        """Each round's decrypted global model."""
        holder = self._holder(key_dir)
        return [
            holder.decrypt_mean(arrays_of(rundir.read_checkpoint(r)))[0]
            for r in rundir.checkpoint_rounds()
        ]

    def server_sight(self, rundir: RunDirectory) -> Sight:
        """Ciphertexts only."""
        return Blind(rundir, self.config, CIPHERTEXT_ONLY)

    def coalition_sight(
        self, rundir: RunDirectory, colluders: int, key_dir: str | Path | None = None
    ) -> Sight:
        """One colluding client holds the shared key: the coalition decrypts everything."""
        if colluders < 1:
            return self.server_sight(rundir)
        return DecryptingSight(rundir, self.config, self._holder(key_dir))

    def narrative(self, arm: Numbers) -> list[str]:
        """The single shared key is the weak point."""
        return [
            "Every client holds the same secret key: a client colluding with the server "
            f"decrypts every update (ig {fmt(arm.get('colluder_inversion_psnr'), '.1f')} dB "
            "PSNR, as on a plaintext server)."
        ]

"""Single-key CKKS: clients encrypt under one shared key; the server adds what it cannot read.

One module: the single-key scheme's server, client and release sides share the key layout
and the verification policy defined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from logging import WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Message, MessageType, RecordDict
from flwr.serverapp.strategy import Strategy

from fedpriv.adversaries.base import HONEST, ServerAdversary
from fedpriv.config import RunConfig
from fedpriv.crypto.authenticated import (
    MAC_FILE,
    Authenticator,
    AuthPolicy,
    Expectation,
    record_release,
    split,
)
from fedpriv.crypto.encoding import LOSS_CAP, NUM_METRICS, UpdateEncoding
from fedpriv.crypto.keyholder import KeyHolder
from fedpriv.crypto.keys import CLIENT_CONTEXT, check_preset, load_server_context, provision_keys
from fedpriv.crypto.mac import Purpose, UploadIdentity
from fedpriv.crypto.packed import PackedContext, seed_break_even
from fedpriv.crypto.presets import get_preset
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.base import Defense, Numbers
from fedpriv.defenses.canary import canary_weight, total_weight
from fedpriv.errors import AggregateRejectedError, ConfigError, FedprivError, KeyMaterialError
from fedpriv.federation.ledger import Ledger, Step
from fedpriv.flower_internals import log
from fedpriv.models import state_from_bytes, state_to_bytes
from fedpriv.narrative import fmt
from fedpriv.parameters import State, state_to_vector, vector_to_state
from fedpriv.registry import APP_DATA_PREFIX, Aggregation
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
from fedpriv.task import initial_state, num_parameters, round_record_bounds, sampled_per_round
from fedpriv.training import LocalUpdate
from fedpriv.wire import arrays_of, server_round

# A run recorded from a Flower app encrypts with ``fedpriv.flower``'s encoding (the
# parameters themselves, its own bounds), which the coalition's decryption does not read.
APP_COALITION = (
    "a colluding client's decryption of a Flower app's uploads (fedpriv.flower's encoding) "
    "is not modelled; every client holds the shared key, so one colluder reads every update"
)
CIPHERTEXT_ONLY = (
    "ciphertext only: the server holds CKKS ciphertexts and no key, so no individual update "
    "(or global model) is visible to it"
)


def encodings(config: RunConfig, defense: Defense, num_clients: int) -> Encodings:
    """How a run's clients lay out their updates and their evaluation metrics.

    Updates drift from the seed's model by at most ``ckks-update-bound``; a round's total
    weight is at most the training records of the clients one round samples, and of every
    DP-audit canary (or what the defense makes it). Evaluation metrics are a mean loss
    (capped at :data:`LOSS_CAP`) and an accuracy, weighed by test records: at most those
    of the clients one round evaluates. ``num_clients``: the most nodes (SuperNodes) a
    round can sample from.
    """
    preset = get_preset(config.ckks_preset)
    records = len(load_dataset(config.dataset))
    train_records, test_records = round_record_bounds(config, num_clients)
    canaries = config.dp_canaries * canary_weight(config, records)
    round_weight = min(total_weight(config, records), train_records + canaries)
    update = UpdateEncoding(
        preset,
        bound=config.ckks_update_bound,
        max_total_weight=defense.max_total_weight(int(round_weight)),
        headroom=defense.aggregate_headroom(),
        num_clients=num_clients,
    )
    metrics = UpdateEncoding(
        preset, bound=LOSS_CAP, max_total_weight=test_records, num_clients=num_clients
    )
    return Encodings(update, metrics)


@dataclass(frozen=True)
class Encodings:
    """A run's encodings of updates and of evaluation metrics."""

    update: UpdateEncoding
    metrics: UpdateEncoding


class CkksCodec(ClientCodec):
    """Decrypt the broadcast sum into the weighted mean; encrypt an update and its weight.

    Under an authenticated key set (a ``mac.key`` beside the context, the default) the
    client answers each round once (:class:`~fedpriv.federation.ledger.Ledger`), tags every
    upload with its run, round and partition, and decrypts a broadcast only after it
    verifies as the sum of enough uploads of one earlier round of this run: whether it
    refuses depends on nothing it decrypted. The key set decides, not the run config: a
    server that turns ``ckks-authenticated`` off gets its unauthenticated sums refused.
    """

    def __init__(
        self, config: RunConfig, node: Node, encoding: Encodings, defense: Defense
    ) -> None:
        self.config = config
        self.node = node
        self.encoding = encoding
        self.defense = defense
        self.holder = KeyHolder(node.key_dir, config.ckks_preset)
        if config.ckks_authenticated and not self.holder.authenticated:
            raise KeyMaterialError(
                f"the key set in {node.key_dir} has no MAC key ({MAC_FILE}): provision one "
                "with `fedpriv keys new`, or run with ckks-authenticated=false (secure "
                "against an honest server only)"
            )
        self.reference = state_to_vector(initial_state(config))

    def read(self, msg: Message) -> tuple[State, int]:
        """The decrypted mean (round 1: the seed's model, the server holds none)."""
        record = arrays_of(msg.content)
        current = server_round(msg.content)
        if not self.holder.authenticated:
            if len(record) == 0:
                return initial_state(self.config), current
            mean, _ = self.holder.decrypt_mean(
                self.encoding.update, record, self.reference.size, self.reference
            )
            return vector_to_state(mean, initial_state(self.config)), current
        purpose = _purpose(msg)
        ledger = Ledger.of(self.node.state)
        ledger.check_fresh(Step.of(purpose), current)
        if len(record) == 0:
            if ledger.accepted_round:
                raise AggregateRejectedError(
                    f"the server sent the seed's model after this client accepted round "
                    f"{ledger.accepted_round}'s aggregate"
                )
            return initial_state(self.config), current
        mean, _, auth = self.holder.open(
            self.encoding.update,
            record,
            self.reference.size,
            self._expectation(msg, ledger, purpose, current),
            self.reference,
        )
        assert auth is not None
        ledger.accept(auth.run, auth.server_round)
        ledger.save(self.node.state)
        return vector_to_state(mean, initial_state(self.config)), current

    def _expectation(
        self, msg: Message, ledger: Ledger, purpose: Purpose, current: int
    ) -> Expectation:
        """What a broadcast must verify as: a training sum of this run's rounds.

        No older than the last aggregate accepted; of an earlier round (a training message)
        or of this one at the latest (an evaluation message).
        """
        run = msg.metadata.run_id
        same_run = ledger.accepted_run == run and ledger.accepted_round > 0
        # A resumed run's first broadcast is the sum its previous run (another run id) made.
        any_run = self.config.resume and ledger.accepted_round == 0
        assert self.holder.authentication is not None
        return Expectation(
            Purpose.TRAIN,
            None if any_run else run,
            ledger.accepted_round if same_run else 1,
            current - 1 if purpose == Purpose.TRAIN else current,
            self.holder.authentication.policy.minimum(Purpose.TRAIN),
        )

    def _identity(self, msg: Message, purpose: Purpose) -> UploadIdentity | None:
        """A fresh identity for this answer, recorded in the ledger before it leaves."""
        if not self.holder.authenticated:
            return None
        current = server_round(msg.content)
        Ledger.record_answer(self.node.state, Step.of(purpose), current)
        return UploadIdentity.fresh(msg.metadata.run_id, current, self.node.partition_id, purpose)

    def train_reply(self, msg: Message, update: LocalUpdate) -> RecordDict:
        """Only ciphertexts (and their tag): the server learns neither parameters nor n_k.

        Under authenticated client-level DP the client adds its share of the sum's noise,
        sized for the fewest uploads its key set accepts in a sum.
        """
        values = state_to_vector(update.state)
        noise = None
        if self.holder.authentication is not None:
            noise = self.defense.noise_share(
                values.size,
                self.holder.authentication.policy.min_train,
                server_round(msg.content),
                self.node.partition_id,
            )
        encrypted = self.holder.encrypt(
            self.encoding.update,
            values,
            update.weight,
            self.reference,
            self._identity(msg, Purpose.TRAIN),
            noise,
        )
        return RecordDict({"arrays": encrypted})

    def evaluate_reply(self, msg: Message, evaluation: Evaluation) -> RecordDict:
        """Encrypted mean loss (capped) and accuracy, weighed by test records."""
        metrics = np.array([min(evaluation.loss, LOSS_CAP), evaluation.accuracy])
        encrypted = self.holder.encrypt(
            self.encoding.metrics,
            metrics,
            evaluation.num_examples,
            identity=self._identity(msg, Purpose.EVALUATE),
        )
        return RecordDict({"metrics": encrypted})


def _purpose(msg: Message) -> Purpose:
    """Whether a message asks for training or evaluation."""
    return Purpose.EVALUATE if msg.metadata.message_type == MessageType.EVALUATE else Purpose.TRAIN


class DecryptingSight(Sight):
    """A key holder reading the server's view: a client colluding with the server."""

    def __init__(
        self, rundir: RunDirectory, config: RunConfig, holder: KeyHolder, encoding: UpdateEncoding
    ) -> None:
        super().__init__(rundir, config)
        self.holder = holder
        self.encoding = encoding
        self.reference = state_to_vector(initial_state(config))

    def global_model(self, server_round: int) -> np.ndarray:
        """The decrypted global model at the start of ``server_round``."""
        self._require_view(server_round)
        if server_round == 1:
            return self.reference.copy()  # clients start from the seed
        sent = arrays_of(self.rundir.read_sent(server_round))
        return self.holder.decrypt_mean(self.encoding, sent, self.reference.size, self.reference)[0]

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every client's update, decrypted: its model and its weight ``n_k``."""
        self._require_view(server_round)
        before = self.global_model(server_round)
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            record = arrays_of(self.rundir.read_payload(path))
            after, weight = self.holder.decrypt_mean(
                self.encoding, record, self.reference.size, self.reference
            )
            observed.append(
                ObservedUpdate(
                    server_round=server_round,
                    node=int(name.rsplit("-", 1)[1]),
                    before=before,
                    after=after,
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

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        backend = get_preset(config.ckks_preset).backend
        if config.ckks_authenticated and backend != "packed":
            raise ConfigError(
                f"ckks-preset {config.ckks_preset} ({backend} backend) cannot be "
                "authenticated: choose a packed preset, or set ckks-authenticated=false "
                "(secure against an honest server only)"
            )

    def auth_policy(self) -> AuthPolicy | None:
        """What the key holders will accept: ``None`` for the unauthenticated protocol.

        Sums of at least ``auth-min-uploads`` uploads, capped at the clients a round samples;
        under client-level DP every sampled client, since each adds the noise share sized
        for that many.
        """
        if not self.config.ckks_authenticated:
            return None
        train, evaluate = sampled_per_round(self.config)
        wanted = self.config.auth_min_uploads
        contributors = self.defense.noise_contributors(train)
        return AuthPolicy(
            contributors if contributors is not None else min(wanted, train),
            min(wanted, evaluate),
        )

    def _key_dir(self) -> str:
        if not self.config.key_dir:
            raise ConfigError("aggregation 'ckks' needs key-dir (see `fedpriv keys new`)")
        return self.config.key_dir

    def provision(self, rundir: RunDirectory) -> RunConfig:
        """Make a key set in ``<run>/keys`` (or the configured ``key-dir``) if none exists."""
        key_dir = Path(self.config.key_dir) if self.config.key_dir else rundir.key_dir
        if not (key_dir / CLIENT_CONTEXT).exists():
            provision_keys(key_dir, self.config.ckks_preset, auth=self.auth_policy())
        return self.config.replace(key_dir=str(key_dir.resolve()))

    def provision_deployment(self, keys: Path) -> DeploymentKeys | None:
        """The secret-key context for the nodes, parameters only for the server."""
        client, server = keys / "client", keys / "server"
        provision_keys(client, self.config.ckks_preset, server, self.auth_policy())
        return DeploymentKeys(client, server)

    def check_server(self) -> None:
        """A key directory of this preset, whose server context holds no key."""
        key_dir = self._key_dir()
        check_preset(key_dir, self.config.ckks_preset)
        load_server_context(key_dir)

    def encodings(self, num_partitions: int = 0) -> Encodings:
        """How this run's updates and metrics are laid out."""
        return encodings(self.config, self.defense, max(self.config.num_clients, num_partitions))

    def strategy(self, adversary: ServerAdversary = HONEST) -> tuple[Strategy, ArrayRecord]:
        """CKKS FedAvg on the parameters-only context; no model: clients start from the seed."""
        self.check_server()
        context = load_server_context(self._key_dir())
        if isinstance(context, PackedContext):
            # The sum's form follows the clients' link (``ckks-link-mbps``).
            context.break_even = seed_break_even(
                context.polynomial, link_bytes_per_second=self.config.ckks_link_mbps * 1e6 / 8
            )
        strategy = CkksFedAvg(
            context,
            self.encodings().update,
            num_parameters(self.config),
            Sampling.from_config(self.config),
            authenticated=self.config.ckks_authenticated,
            adversary=adversary,
        )
        return strategy, ArrayRecord()

    def resumed(self, strategy: Strategy, arrays: ArrayRecord) -> None:
        """The resumed global sum is what the clients last accepted."""
        if isinstance(strategy, CkksFedAvg):
            strategy.accepted = arrays

    def codec(self, node: Node) -> ClientCodec:
        """Encrypt and decrypt with the node's secret-key context."""
        return CkksCodec(self.config, node, self.encodings(node.num_partitions), self.defense)

    def _holder(self, key_dir: str | Path | None) -> KeyHolder:
        return KeyHolder(key_dir or self._key_dir(), self.config.ckks_preset)

    def release(self, rundir: RunDirectory, key_dir: str | Path | None = None) -> None:
        """Decrypt the final model into ``model.pt`` and each round's metrics into the history.

        Needs the clients' secret-key context: only key holders can release. Under an
        authenticated key set the key holder decrypts only what verifies: the final
        checkpoint as a training sum of one round of the run (of at least the policy's
        uploads; the last round's, unless clients refused it and the server kept the one
        before), each round's metrics as an evaluation sum of that round; a run is released
        once (``released.json`` in the key directory), so a server cannot have a second,
        other aggregate of the same run decrypted. Metrics that do not verify stay unread.

        Raises
        ------
        AggregateRejectedError
            If the final checkpoint does not verify (nothing is written).

        """
        holder = self._holder(key_dir)
        rounds = rundir.checkpoint_rounds()
        if not rounds:
            raise FedprivError(f"{rundir.path} has no checkpoint to release")
        final, auth = self._final(rundir, rounds[-1], holder)
        if auth is not None:
            record_release(holder.key_dir, auth)
        encoding = self.encodings()
        history = rundir.read_history()
        for record in history:
            state = rundir.read_checkpoint(record.round)
            if EVALUATION_STATE not in state.array_records:
                continue
            metrics = arrays_of(state, EVALUATION_STATE)
            expectation = self._expectation(holder, Purpose.EVALUATE, record.round, record.round)
            try:
                (loss, accuracy), total, _ = holder.open(
                    encoding.metrics, metrics, NUM_METRICS, expectation
                )
            except AggregateRejectedError as err:
                log(WARNING, "release: round %d's metrics left unread: %s", record.round, err)
                record.accuracy = record.loss = None
                continue
            # Each client's accuracy times its test records is a whole number of correct
            # predictions: rounding their sum removes CKKS's error from the accuracy.
            record.accuracy = round(float(accuracy) * total) / total
            record.loss = float(loss)
        rundir.write_history(history)
        rundir.write_model(state_to_bytes(vector_to_state(final, initial_state(self.config))))

    def _expectation(
        self, holder: KeyHolder, purpose: Purpose, first: int, last: int
    ) -> Expectation:
        """A sum of ``purpose`` uploads of one round in ``first..last``, of any run.

        The key holder reads the run from the aggregate; the run id is in every pad it checks.
        """
        minimum = (
            1 if holder.authentication is None else holder.authentication.policy.minimum(purpose)
        )
        return Expectation(purpose, None, first, last, minimum)

    def _final(
        self, rundir: RunDirectory, last: int, holder: KeyHolder
    ) -> tuple[np.ndarray, Authenticator | None]:
        """Round ``last``'s global model (verified where the key set authenticates).

        A checkpoint holds the sum of its round or, where clients refused that round's
        broadcast, the last sum they accepted: any round up to ``last``.
        """
        reference = state_to_vector(initial_state(self.config))
        arrays = arrays_of(rundir.read_checkpoint(last))
        if len(split(arrays)[0]) == 0:  # no round changed the model: it is still the seed's
            return reference, None
        expectation = self._expectation(holder, Purpose.TRAIN, 1, last)
        mean, _, auth = holder.open(
            self.encodings().update, arrays, reference.size, expectation, reference
        )
        return mean, auth

    def round_models(
        self, rundir: RunDirectory, key_dir: str | Path | None = None
    ) -> list[np.ndarray]:
        """Each round's decrypted global model."""
        holder = self._holder(key_dir)
        return [self._final(rundir, r, holder)[0] for r in rundir.checkpoint_rounds()]

    def server_sight(self, rundir: RunDirectory) -> Sight:
        """Ciphertexts only."""
        return Blind(rundir, self.config, CIPHERTEXT_ONLY)

    def decrypting_coalition(self) -> int:
        """One client: every client holds the secret key."""
        return 1

    def coalition_sight(
        self, rundir: RunDirectory, colluders: int, key_dir: str | Path | None = None
    ) -> Sight:
        """One colluding client holds the shared key: the coalition decrypts everything."""
        if colluders < 1:
            return self.server_sight(rundir)
        if self.config.dataset.startswith(APP_DATA_PREFIX):
            return Blind(rundir, self.config, APP_COALITION)
        return DecryptingSight(rundir, self.config, self._holder(key_dir), self.encodings().update)

    def holds_against(self) -> str:
        """Authenticated: a deviating server; either way no colluding client (shared key)."""
        if self.config.ckks_authenticated:
            return "a deviating server, c = 0"
        return "a passive server, c = 0"

    def narrative(self, arm: Numbers) -> list[str]:
        """The single shared key is the weak point."""
        return [
            "Every client holds the same secret key: a client colluding with the server "
            f"decrypts every update (inversion {fmt(arm.get('colluder_inversion_psnr'), '.1f')} dB "
            "PSNR, as on a plaintext server)."
        ]

"""Threshold CKKS in any Flower app: no party holds the key; ``t`` clients decrypt each sum.

The protocol, wire format and checks are the ``ckks-threshold`` arm's (its party and its
server session, :mod:`fedpriv.schemes.threshold`): before round 1 the clients make a
collective key and Shamir-share their secrets among themselves (Mouchet, Bertrand and
Hubaux, JoC 2023), relayed by the server; every round each trained client encrypts its
drift from the broadcast model under the collective key, the server sums the ciphertexts
and asks the uploaders for decryption shares of the sum, and ``t`` shares open it. The
server reads each round's aggregate (as under SecAgg+) and no individual update.

Authenticated (the default), the key setup is signed and every upload too; a party gives
one decryption share a round, only for a sum of at least ``min_uploads`` signed uploads of
that round (the arm's checks, in the arm's code). What differs from the arm: the model is
the app's (its layout travels in each train message, as under :mod:`fedpriv.flower.ckks`),
and a party learns the model's size from the train message of the round it decrypts.

One module: the mod and the strategy are the two ends of one protocol, with the settings
they share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.presets import DEFAULT_THRESHOLD_PRESET, get_preset
from fedpriv.crypto.signing import ROSTER_FILE, provision_identities
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire
from fedpriv.errors import (
    AggregateRejectedError,
    CiphertextFormatError,
    ConfigError,
    CryptoError,
    KeyMaterialError,
    ReplyCode,
)
from fedpriv.federation.rounds import wait_for_nodes
from fedpriv.flower.ckks import (
    ARRAYS,
    CONFIG,
    LAYOUT_KEY,
    NODE_KEY_DIR,
    RUN_KEY_DIR,
    Layout,
    is_encrypted,
    take_weight,
)
from fedpriv.schemes.base import Node
from fedpriv.schemes.threshold.messages import MESSAGE_TYPE, UPLOAD
from fedpriv.schemes.threshold.party import PartyParams, ThresholdCodec
from fedpriv.schemes.threshold.server import ThresholdSession
from fedpriv.schemes.threshold.strategy import ThresholdFedAvg
from fedpriv.training import LocalUpdate
from fedpriv.wire import refusal

# The action of the protocol's query messages (``query.protocol``), for ``app.query(...)``.
PROTOCOL_ACTION = MESSAGE_TYPE.partition(".")[2]
# Where a party keeps the size of the model it last trained (its decryption shares cover it).
MODEL_SIZE = "fedpriv-threshold-model"


@dataclass(frozen=True)
class ThresholdSettings:
    """What an app's :func:`threshold_mod` and :class:`ThresholdEncryptedFedAvg` agree on.

    Attributes
    ----------
    threshold : int
        ``t``: parties needed to decrypt anything (and given a share of every secret).
    update_bound : float
        The largest ``|change|`` of a parameter in one round's local training (a client
        refuses to send more, naming the bound); the error of the decrypted mean is
        proportional to it.
    max_round_examples : int
        The largest sum of ``num-examples`` one round can have.
    max_round_clients : int
        The most uploads one sum holds.
    min_uploads : int
        Fewest signed uploads a party decrypts a sum of (authenticated; 0: ``threshold``).
    weight_key : str
        The train reply's metric that weighs it; the mod removes it from the reply.
    preset : str
        The multiparty CKKS preset (``fedpriv keys presets``).
    authenticated : bool
        Signed key setup and uploads, one decryption share a round for a verified sum.
        Needs each client's signing key and the roster in its key directory.

    """

    threshold: int = 2
    update_bound: float = 4.0
    max_round_examples: int = 100_000
    max_round_clients: int = 100
    min_uploads: int = 0
    weight_key: str = "num-examples"
    preset: str = DEFAULT_THRESHOLD_PRESET
    authenticated: bool = True

    def __post_init__(self) -> None:
        if self.threshold < 2:
            raise ConfigError(
                f"threshold must be >= 2 (one party would hold the key), got {self.threshold}"
            )
        if not (math.isfinite(self.update_bound) and self.update_bound > 0):
            raise ConfigError(f"update_bound must be positive, got {self.update_bound}")
        if self.max_round_examples < 1 or self.max_round_clients < 1 or self.min_uploads < 0:
            raise ConfigError(
                "max_round_examples and max_round_clients must be >= 1, min_uploads >= 0"
            )
        if not self.weight_key:
            raise ConfigError("weight_key must name a metric")
        preset = get_preset(self.preset)
        if preset.backend != "threshold":
            raise ConfigError(f"preset {self.preset} is no threshold preset")
        if self.threshold > preset.max_parties:
            raise ConfigError(
                f"threshold {self.threshold} exceeds the {preset.max_parties} "
                f"parties of preset {self.preset}"
            )

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> ThresholdSettings:
        """The settings an app's run config gives; defaults for the keys it lacks.

        Keys ``fedpriv-threshold``, ``fedpriv-update-bound``, ``fedpriv-max-round-examples``,
        ``fedpriv-max-round-clients``, ``fedpriv-min-uploads``, ``fedpriv-weight-key``,
        ``fedpriv-threshold-preset``, ``fedpriv-authenticated``: the mod and the strategy
        read the same run config, hence the same settings.
        """
        d = cls()
        return cls(
            int(run_config.get("fedpriv-threshold", d.threshold)),
            float(run_config.get("fedpriv-update-bound", d.update_bound)),
            int(run_config.get("fedpriv-max-round-examples", d.max_round_examples)),
            int(run_config.get("fedpriv-max-round-clients", d.max_round_clients)),
            int(run_config.get("fedpriv-min-uploads", d.min_uploads)),
            str(run_config.get("fedpriv-weight-key", d.weight_key)),
            str(run_config.get("fedpriv-threshold-preset", d.preset)),
            bool(run_config.get("fedpriv-authenticated", d.authenticated)),
        )

    @property
    def uploads_needed(self) -> int:
        """Fewest uploads a party decrypts a sum of: ``min_uploads``, at least ``threshold``."""
        return max(self.threshold, self.min_uploads)

    def encoding(self) -> UpdateEncoding:
        """How a drift and its weight are laid out in the slots."""
        return UpdateEncoding(
            get_preset(self.preset),
            bound=self.update_bound,
            max_total_weight=float(self.max_round_examples),
            num_clients=self.max_round_clients,
        )


def _model_size(state: RecordDict) -> Callable[[], int]:
    """The size of the model this party last trained, read when a decryption asks for it."""

    def size() -> int:
        record = state.config_records.get(MODEL_SIZE)
        value = record.get("values") if record is not None else None
        if not isinstance(value, int):
            raise CryptoError("decrypt: this party trained no model yet, so it knows no size")
        return value

    return size


def threshold_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Answer the key setup and decryptions; encrypt the drift a train reply holds.

    Add it to a stock ``ClientApp`` (``ClientApp(mods=[threshold_mod])``) and register
    :func:`threshold_query` for the protocol's queries, which Flower routes only to a
    registered function (``app.query(PROTOCOL_ACTION)(threshold_query)``). Its settings come
    from the app's run config (:meth:`ThresholdSettings.from_run_config`), its key directory
    (the signing key and roster, and where it keeps its Shamir shares) from the node config
    ``key-dir`` or the run config ``fedpriv-key-dir``; :func:`make_threshold_mod` fixes
    either. Evaluate messages carry the plaintext model and pass through.
    """
    settings = ThresholdSettings.from_run_config(context.run_config)
    return _ThresholdMod(settings, None)(msg, context, call_next)


def threshold_query(msg: Message, context: Context) -> Message:
    """The ClientApp's query function for the protocol's messages (key setup, decryptions).

    Flower hands a message only to a function registered for its type, and the protocol's
    messages are queries of action ``protocol``: register this beside the mod,
    ``app.query(PROTOCOL_ACTION)(threshold_query)``. Behind :func:`threshold_mod` the mod
    answers first, with its own settings; alone it answers with the run config's.
    """
    settings = ThresholdSettings.from_run_config(context.run_config)
    return _ThresholdMod(settings, None).answer_query(msg, context)


def make_threshold_mod(
    settings: ThresholdSettings | None = None, key_dir: str | Path | None = None
) -> Any:
    """:func:`threshold_mod` with ``settings`` (those of the server's strategy) and ``key_dir``."""
    folder = None if key_dir is None else Path(key_dir)
    return _ThresholdMod(settings or ThresholdSettings(), folder)


class _ThresholdMod:
    """The mod: its settings, and the key directory if the app names one."""

    def __init__(self, settings: ThresholdSettings, key_dir: Path | None) -> None:
        self.settings = settings
        self.key_dir = key_dir

    def _codec(self, context: Context) -> ThresholdCodec:
        key_dir = self.key_dir or context.node_config.get(NODE_KEY_DIR)
        key_dir = key_dir or context.run_config.get(RUN_KEY_DIR) or ""
        if self.settings.authenticated and not key_dir:
            raise KeyMaterialError(
                f"threshold_mod: no key directory (node config {NODE_KEY_DIR!r} or run config "
                f"{RUN_KEY_DIR!r}) for this party's signing key"
            )
        node = Node(
            int(context.node_config.get("partition-id", 0)),
            int(context.node_config.get("num-partitions", 1)),
            str(key_dir),
            context.state,
        )
        params = PartyParams(
            self.settings.threshold,
            self.settings.encoding(),
            self.settings.authenticated,
            _model_size(context.state),
        )
        return ThresholdCodec(params, node)

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        kind = msg.metadata.message_type
        if kind == MESSAGE_TYPE:
            return self.answer_query(msg, context)
        if kind != MessageType.TRAIN or ARRAYS not in msg.content:
            return call_next(msg, context)
        config = msg.content.config_records.get(CONFIG, ConfigRecord())
        start = msg.content.array_records[ARRAYS]
        try:
            layout = Layout.from_json(str(config[LAYOUT_KEY]))
            if is_encrypted(start) or Layout.of(start) != layout:
                raise AggregateRejectedError("the model is not a plaintext model of its layout")
        except (KeyError, AggregateRejectedError) as err:
            return refusal(msg, ReplyCode.AGGREGATE_REJECTED, f"refused the broadcast: {err}")
        start_state = {k: a.numpy() for k, a in start.items()}
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        return self._encrypt(msg, reply, context, layout, start_state)

    def answer_query(self, msg: Message, context: Context) -> Message:
        """The party's answer to one stage of the protocol, or a refusal naming why."""
        try:
            return Message(self._codec(context).query(msg), reply_to=msg)
        except (ConfigError, CiphertextFormatError, CryptoError) as err:
            return refusal(msg, ReplyCode.PROTOCOL_REFUSED, f"refused: {err}")

    def _encrypt(
        self,
        msg: Message,
        reply: Message,
        context: Context,
        layout: Layout,
        start: dict[str, np.ndarray],
    ) -> Message:
        content = reply.content
        model, weight = take_weight(content, self.settings.weight_key, "threshold_mod")
        layout.flatten(model)  # refuses arrays that are not the broadcast model's
        context.state[MODEL_SIZE] = ConfigRecord({"values": layout.size})
        update = LocalUpdate({k: a.numpy() for k, a in model.items()}, start, weight, 0.0)
        encrypted = self._codec(context).train_reply(msg, update)
        content[ARRAYS] = encrypted.array_records[ARRAYS]
        if UPLOAD in encrypted.config_records:
            content[UPLOAD] = encrypted.config_records[UPLOAD]
        return reply


class ThresholdEncryptedFedAvg(ThresholdFedAvg):
    """Flower's ``FedAvg`` whose updates only ``t`` clients together read, one sum a round.

    For an app whose ClientApp runs :func:`threshold_mod`. Constructed as Flower's ``FedAvg``
    is (the same keyword arguments), plus the settings and, authenticated, the key directory
    holding the parties' roster. ``start()`` first runs the key setup with the connected
    nodes (all of them become parties; ``min_available_nodes`` is waited for), then the
    rounds as ``FedAvg`` does: the global model travels in plaintext (the server reads each
    round's aggregate), every train reply is an encrypted drift the server sums, and the
    uploaders' decryption shares open the sum into the next global model.

    Parameters
    ----------
    key_dir : str | Path | None
        Where the roster (``roster.json``: each party's public signing key) is, and in a
        simulation the clients' signing keys (authenticated only).
    settings : ThresholdSettings
        Those of the clients' mods.
    provision : bool
        In a simulation: make a signing key per connected node and the roster in
        ``key_dir`` if it holds none. A deployment gives each node its own.
    setup_timeout : float
        Seconds to wait for the nodes, and for each exchange of the protocol.
    **fedavg : Any
        Flower ``FedAvg``'s arguments (``fraction_train``, ``min_available_nodes``, ...).

    """

    def __init__(
        self,
        key_dir: str | Path | None = None,
        settings: ThresholdSettings | None = None,
        provision: bool = False,
        setup_timeout: float = 300.0,
        **fedavg: Any,
    ) -> None:
        self.settings = settings or ThresholdSettings()
        if self.settings.authenticated and key_dir is None:
            raise KeyMaterialError(
                "ThresholdEncryptedFedAvg: authenticated threshold CKKS needs the key directory "
                "of the parties' roster (key_dir)"
            )
        self.key_dir = None if key_dir is None else Path(key_dir)
        self.provision = provision
        self.setup_timeout = setup_timeout
        self.app_layout: Layout | None = None
        encoding = self.settings.encoding()
        wire = ThresholdWire(ThresholdCkks(encoding.preset))
        super().__init__(fedavg, wire, encoding, {})

    @classmethod
    def from_run_config(
        cls, run_config: Mapping[str, Any], **fedavg: Any
    ) -> ThresholdEncryptedFedAvg:
        """The strategy an app's run config describes, with Flower ``FedAvg``'s arguments.

        ``fedpriv-key-dir`` names the key directory; ``fedpriv-provision = true`` (a
        simulation) provisions the signing keys there; the settings are
        :meth:`ThresholdSettings.from_run_config`'s, as the clients' mods read them.
        """
        key_dir = run_config.get(RUN_KEY_DIR)
        return cls(
            str(key_dir) if key_dir else None,
            ThresholdSettings.from_run_config(run_config),
            provision=bool(run_config.get("fedpriv-provision", False)),
            **fedavg,
        )

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], Any] | None = None,
    ) -> Result:
        """Set up the parties' keys with the connected nodes, then run ``FedAvg``'s rounds.

        Raises
        ------
        ConfigError
            If ``initial_arrays`` are encrypted (the first model is the app's, public).
        KeyMaterialError
            If an authenticated run finds no roster (and may not provision one).
        ~fedpriv.schemes.threshold.server.SetupFailed
            If fewer than ``threshold`` nodes complete the key setup.

        """
        if is_encrypted(initial_arrays):
            raise ConfigError("ThresholdEncryptedFedAvg starts from the app's plaintext arrays")
        self.app_layout = Layout.of(initial_arrays)
        self.template = {k: np.zeros(shape, dtype=d) for k, shape, d in self.app_layout.arrays}
        self.num_values = self.app_layout.size
        self.update_size = self.encoding.size(self.num_values)
        wait_for_nodes(grid, self.min_available_nodes, self.setup_timeout)
        nodes = sorted(grid.get_node_ids())
        if self.settings.authenticated:
            assert self.key_dir is not None
            if self.provision:
                provision_identities(self.key_dir, range(len(nodes)), self.settings.uploads_needed)
            if not (self.key_dir / ROSTER_FILE).is_file():
                raise KeyMaterialError(
                    f"{self.key_dir}: no {ROSTER_FILE} (the parties' signing keys): provision "
                    "them, or pass provision=True in a simulation"
                )
        self.session = ThresholdSession(
            grid,
            self.wire,
            self.settings.threshold,
            self.setup_timeout,
            authenticated=self.settings.authenticated,
        )
        self.session.setup(nodes, time.perf_counter())
        return super().start(
            grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Any:
        """Every train message names the model's layout (the parties encrypt its drift)."""
        assert self.app_layout is not None, "start() sets the layout"
        config[LAYOUT_KEY] = self.app_layout.to_json()
        return super().configure_train(server_round, arrays, config, grid)

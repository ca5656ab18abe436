"""CKKS under one shared key in any Flower app: a client mod and a server strategy.

A stock Flower Message-API app (``flwr new``: a ``ClientApp`` whose train handler replies
with an ``ArrayRecord`` under ``"arrays"`` and a ``MetricRecord`` holding ``num-examples``,
a ``ServerApp`` that runs ``FedAvg(...).start(...)``) encrypts its aggregation by adding
:func:`ckks_mod` to its ``ClientApp`` and constructing :class:`EncryptedFedAvg` instead of
``FedAvg``. The protocol, wire format and checks are the ``ckks`` arm's
(``docs/explanation/ckks.md``):

* every client encrypts its model and its weight ``n_k`` under the clients' shared key; the
  server sums ciphertexts it cannot read, never holds a key, and broadcasts the sum; the
  mod decrypts it into the weighted mean before the app's handler sees the message;
* under an authenticated key set (``fedpriv keys new``'s default) every upload carries a tag
  and a client decrypts a broadcast only once it verifies as the sum of enough uploads of an
  earlier round of this run; it answers each round once and never goes back
  (``fedpriv/federation/ledger.py``);
* the first round's model is the app's initial model, sent in the clear (it is public);
  a client accepts a plaintext model only before it has accepted a verified sum.

One module: the mod and the strategy are the two ends of one protocol, with the settings
and the layout they share.

What differs from the arm: the encoding carries the parameters themselves, not a drift from
a seed's model (a Flower app builds its initial model as it likes), so ``update_bound``
bounds every parameter; the server sends the model's layout (names, shapes, dtypes) in the
clear with each message; evaluation metrics travel as the app reports them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Result

from fedpriv.crypto.authenticated import AuthPolicy, Expectation, split
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keyholder import KeyHolder
from fedpriv.crypto.keys import (
    CLIENT_CONTEXT,
    SERVER_CONTEXT,
    load_server_context,
    provision_keys,
    read_preset,
)
from fedpriv.crypto.mac import Purpose, UploadIdentity
from fedpriv.crypto.packing import CIPHERTEXTS_KEY
from fedpriv.crypto.presets import DEFAULT_PRESET, CkksPreset
from fedpriv.errors import (
    AggregateRejectedError,
    BoundError,
    ConfigError,
    KeyMaterialError,
    ReplyCode,
)
from fedpriv.federation.ledger import Ledger, Step
from fedpriv.flower_internals import log
from fedpriv.parameters import state_to_vector, vector_to_state
from fedpriv.strategies.ckks import CkksFedAvg
from fedpriv.wire import refusal

# Where a message carries the model's layout (in its "config" record), and where the mod
# finds its key directory: the node's ``--node-config key-dir=...`` (a deployment), else the
# app's run config (a simulation, where every node shares one machine).
LAYOUT_KEY = "fedpriv-layout"
NODE_KEY_DIR = "key-dir"
RUN_KEY_DIR = "fedpriv-key-dir"
ARRAYS = "arrays"
CONFIG = "config"


@dataclass(frozen=True)
class CkksSettings:
    """What an app's :func:`ckks_mod` and :class:`EncryptedFedAvg` agree on.

    Attributes
    ----------
    update_bound : float
        The largest ``|parameter|`` a client sends (it refuses to send more, naming the
        array); the error of the decrypted mean is proportional to it.
    max_round_examples : int
        The largest sum of ``num-examples`` one round can have: the weights' unit is chosen
        so that the largest sum just fits.
    weight_key : str
        The train reply's metric that weighs it (Flower's FedAvg reads ``num-examples``).
        The mod removes it from the reply: the server learns no ``n_k``.

    """

    update_bound: float = 4.0
    max_round_examples: int = 100_000
    weight_key: str = "num-examples"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.update_bound) and self.update_bound > 0):
            raise ConfigError(f"update_bound must be positive, got {self.update_bound}")
        if self.max_round_examples < 1:
            raise ConfigError(f"max_round_examples must be >= 1, got {self.max_round_examples}")
        if not self.weight_key:
            raise ConfigError("weight_key must name a metric")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> CkksSettings:
        """The settings an app's run config gives; defaults for the keys it lacks.

        Keys ``fedpriv-update-bound``, ``fedpriv-max-round-examples``,
        ``fedpriv-weight-key``: the ClientApp's mod and the ServerApp's strategy read the
        same run config, hence the same settings.
        """
        defaults = cls()
        return cls(
            float(run_config.get("fedpriv-update-bound", defaults.update_bound)),
            int(run_config.get("fedpriv-max-round-examples", defaults.max_round_examples)),
            str(run_config.get("fedpriv-weight-key", defaults.weight_key)),
        )

    def encoding(self, preset: CkksPreset) -> UpdateEncoding:
        """How values and weights are laid out in the slots."""
        return UpdateEncoding(
            preset, bound=self.update_bound, max_total_weight=float(self.max_round_examples)
        )


@dataclass(frozen=True)
class Layout:
    """The names, shapes and dtypes of a model's arrays, in order."""

    arrays: tuple[tuple[str, tuple[int, ...], str], ...]

    @classmethod
    def of(cls, record: ArrayRecord) -> Layout:
        """The layout of a plaintext model."""
        return cls(tuple((k, tuple(a.shape), a.dtype) for k, a in record.items()))

    @property
    def size(self) -> int:
        """How many parameters."""
        return sum(math.prod(shape) for _, shape, _ in self.arrays)

    def to_json(self) -> str:
        """As a message's config carries it."""
        return json.dumps([[k, list(s), d] for k, s, d in self.arrays])

    @classmethod
    def from_json(cls, text: str) -> Layout:
        """Parse what :meth:`to_json` wrote.

        Raises
        ------
        AggregateRejectedError
            If it is no layout (the message is refused).

        """
        try:
            arrays = tuple(
                (str(k), tuple(int(n) for n in s), str(d)) for k, s, d in json.loads(text)
            )
        except (TypeError, ValueError) as err:
            raise AggregateRejectedError(
                f"the message's {LAYOUT_KEY} is no layout ({err})"
            ) from err
        if any(n < 0 for _, s, _ in arrays for n in s):
            raise AggregateRejectedError(f"the message's {LAYOUT_KEY} has a negative dimension")
        return cls(arrays)

    def flatten(self, record: ArrayRecord) -> np.ndarray:
        """A model of this layout as one float64 vector.

        Raises
        ------
        ConfigError
            If the model's arrays are not those of the layout.

        """
        if Layout.of(record).arrays != self.arrays:
            raise ConfigError(
                "the train reply's arrays differ from the model the server sent (names, "
                "shapes or dtypes)"
            )
        return state_to_vector({k: a.numpy() for k, a in record.items()})

    def unflatten(self, values: np.ndarray) -> ArrayRecord:
        """One vector as a model of this layout (each array cast back to its dtype)."""
        template = {k: np.zeros(shape, dtype=dtype) for k, shape, dtype in self.arrays}
        state = vector_to_state(values, template)
        return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in state.items()})


def take_weight(content: RecordDict, weight_key: str, mod: str) -> tuple[ArrayRecord, float]:
    """A train reply's model, and its weight, taken out of its metrics.

    The weight travels inside the ciphertexts only: the server learns no ``n_k``.

    Raises
    ------
    ConfigError
        Naming ``mod``, if the reply lacks its model, its metrics or a numeric weight.

    """
    metrics = content.metric_records.get("metrics")
    if ARRAYS not in content.array_records or metrics is None:
        raise ConfigError(f"{mod}: a train reply needs 'arrays' and 'metrics' records")
    if weight_key not in metrics:
        raise ConfigError(f"{mod}: the train reply's metrics lack {weight_key!r}")
    weight = metrics.pop(weight_key)
    if not isinstance(weight, int | float):
        raise ConfigError(f"{mod}: metric {weight_key!r} is no number")
    return content.array_records[ARRAYS], float(weight)


def is_encrypted(record: ArrayRecord) -> bool:
    """Whether a record carries fedpriv's ciphertexts (and perhaps their ``auth``)."""
    return CIPHERTEXTS_KEY in record


def client_key_dir(context: Context) -> Path:
    """The node's key directory: ``--node-config key-dir=...``, else run config ``fedpriv-key-dir``.

    Raises
    ------
    KeyMaterialError
        If neither is set.

    """
    node = context.node_config.get(NODE_KEY_DIR)
    if node:
        return Path(str(node))
    run = context.run_config.get(RUN_KEY_DIR)
    if run:
        return Path(str(run))
    raise KeyMaterialError(
        f"ckks_mod: no key directory (node config {NODE_KEY_DIR!r} or run config {RUN_KEY_DIR!r})"
    )


def ckks_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Decrypt the broadcast for the app's handler; encrypt the model its train reply holds.

    Add it to a stock ``ClientApp`` (``ClientApp(mods=[ckks_mod])``): its settings come from
    the app's run config (:meth:`CkksSettings.from_run_config`), its keys from where
    :func:`client_key_dir` finds them; :func:`make_ckks_mod` fixes either. Messages other
    than train and evaluate pass through.
    """
    settings = CkksSettings.from_run_config(context.run_config)
    return _CkksMod(settings, None)(msg, context, call_next)


def make_ckks_mod(settings: CkksSettings | None = None, key_dir: str | Path | None = None) -> Any:
    """:func:`ckks_mod` with ``settings`` (those of the server's strategy) and ``key_dir``."""
    return _CkksMod(settings or CkksSettings(), None if key_dir is None else Path(key_dir))


class _CkksMod:
    """The mod: its settings, and the key directory if the app names one."""

    def __init__(self, settings: CkksSettings, key_dir: Path | None) -> None:
        self.settings = settings
        self.key_dir = key_dir

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        kind = msg.metadata.message_type
        if kind not in (MessageType.TRAIN, MessageType.EVALUATE) or ARRAYS not in msg.content:
            return call_next(msg, context)
        key_dir = self.key_dir or client_key_dir(context)
        holder = KeyHolder(key_dir, read_preset(key_dir).name)
        encoding = self.settings.encoding(holder.preset)
        config = msg.content.config_records.get(CONFIG, ConfigRecord())
        round_value = config.get("server-round", 0)
        current = round_value if isinstance(round_value, int) else 0
        try:
            layout = Layout.from_json(str(config[LAYOUT_KEY]))
            model = self._read(msg, context, holder, encoding, layout, current)
        except (KeyError, AggregateRejectedError) as err:
            reason = f"refused the broadcast: {err}"
            log(INFO, "ckks_mod: %s", reason)
            # The arm's code: the strategy then falls back on the last sum clients accepted.
            return refusal(msg, ReplyCode.AGGREGATE_REJECTED, reason)
        msg.content[ARRAYS] = model
        reply = call_next(msg, context)
        if kind != MessageType.TRAIN or reply.has_error():
            return reply
        return self._encrypt(msg, reply, context, holder, encoding, layout, current)

    def _read(
        self,
        msg: Message,
        context: Context,
        holder: KeyHolder,
        encoding: UpdateEncoding,
        layout: Layout,
        current: int,
    ) -> ArrayRecord:
        record = msg.content.array_records[ARRAYS]
        purpose = (
            Purpose.EVALUATE if msg.metadata.message_type == MessageType.EVALUATE else Purpose.TRAIN
        )
        ledger = Ledger.of(context.state) if holder.authenticated else None
        if ledger is not None:
            ledger.check_fresh(Step.of(purpose), current)
        if not is_encrypted(record):
            if ledger is not None and ledger.accepted_round:
                raise AggregateRejectedError(
                    f"a plaintext model after this client accepted round "
                    f"{ledger.accepted_round}'s sum"
                )
            if Layout.of(record) != layout:
                raise AggregateRejectedError("the plaintext model is not of the message's layout")
            return record
        if ledger is None:
            mean, _ = holder.decrypt_mean(encoding, record, layout.size)
            return layout.unflatten(mean)
        assert holder.authentication is not None
        run = msg.metadata.run_id
        same_run = ledger.accepted_run == run and ledger.accepted_round > 0
        expectation = Expectation(
            Purpose.TRAIN,
            run,
            ledger.accepted_round if same_run else 1,
            current - 1 if purpose == Purpose.TRAIN else current,
            holder.authentication.policy.minimum(Purpose.TRAIN),
        )
        mean, _, auth = holder.open(encoding, record, layout.size, expectation)
        assert auth is not None
        ledger.accept(auth.run, auth.server_round)
        ledger.save(context.state)
        return layout.unflatten(mean)

    def _encrypt(
        self,
        msg: Message,
        reply: Message,
        context: Context,
        holder: KeyHolder,
        encoding: UpdateEncoding,
        layout: Layout,
        current: int,
    ) -> Message:
        content = reply.content
        model, weight = take_weight(content, self.settings.weight_key, "ckks_mod")
        values = layout.flatten(model)
        for key, array in model.items():
            largest = float(np.abs(array.numpy()).max(initial=0.0))
            if not largest <= self.settings.update_bound:  # NaN included
                raise BoundError(
                    f"ckks_mod: array {key!r} holds {largest:.4g}, beyond update_bound "
                    f"{self.settings.update_bound:g} (raise it in CkksSettings on both sides)"
                )
        identity: UploadIdentity | None = None
        if holder.authenticated:
            Ledger.record_answer(context.state, Step.TRAIN, current)
            partition = int(context.node_config.get("partition-id", 0))
            identity = UploadIdentity.fresh(msg.metadata.run_id, current, partition, Purpose.TRAIN)
        content[ARRAYS] = holder.encrypt(encoding, values, weight, identity=identity)
        return reply


class EncryptedFedAvg(CkksFedAvg):
    """Flower's ``FedAvg`` over ciphertexts, for an app whose ClientApp runs :func:`ckks_mod`.

    Constructed as Flower's ``FedAvg`` is (the same keyword arguments), plus the key
    directory whose ``server.ctx`` (CKKS parameters, no key) it reads. ``start()`` runs as
    ``FedAvg``'s: round 1 sends ``initial_arrays`` in the clear, every later message the
    encrypted sum; ``Result.arrays`` is the final sum, which only a key holder reads
    (:func:`release_arrays`).

    Parameters
    ----------
    key_dir : str | Path
        The server's key directory (``fedpriv keys new --server-out``, or the one directory
        a simulation shares).
    settings : CkksSettings
        Those of the clients' mods.
    authenticated : bool
        Whether uploads carry tags (the clients' key set decides; a mismatch is refused).
    provision : AuthPolicy | None
        In a simulation: provision a key set in ``key_dir`` if it holds none (authenticated
        with this policy). A deployment provisions with ``fedpriv keys new``.
    preset : str
        The CKKS preset of a provisioned key set.
    **fedavg : Any
        Flower ``FedAvg``'s arguments (``fraction_train``, ``min_available_nodes``, ...).

    """

    def __init__(
        self,
        key_dir: str | Path,
        settings: CkksSettings | None = None,
        authenticated: bool = True,
        provision: AuthPolicy | None = None,
        preset: str = DEFAULT_PRESET,
        **fedavg: Any,
    ) -> None:
        key_dir = Path(key_dir)
        if provision is not None and not (key_dir / CLIENT_CONTEXT).exists():
            provision_keys(key_dir, preset, auth=provision if authenticated else None)
        if not (key_dir / SERVER_CONTEXT).exists():
            raise KeyMaterialError(f"{key_dir}: no {SERVER_CONTEXT} (run `fedpriv keys new`)")
        self.settings = settings or CkksSettings()
        self.layout: Layout | None = None
        context = load_server_context(key_dir)
        encoding = self.settings.encoding(read_preset(key_dir))
        super().__init__(context, encoding, 0, fedavg, authenticated)

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], **fedavg: Any) -> EncryptedFedAvg:
        """The strategy an app's run config describes, with Flower ``FedAvg``'s arguments.

        ``fedpriv-key-dir`` names the key directory; ``fedpriv-provision = true`` (a
        simulation) provisions an authenticated key set there if it holds none; the
        settings are :meth:`CkksSettings.from_run_config`'s, as the clients' mods read them.

        Raises
        ------
        KeyMaterialError
            If the run config names no key directory.

        """
        if not run_config.get(RUN_KEY_DIR):
            raise KeyMaterialError(f"EncryptedFedAvg: the run config has no {RUN_KEY_DIR!r}")
        return cls(
            str(run_config[RUN_KEY_DIR]),
            CkksSettings.from_run_config(run_config),
            provision=AuthPolicy() if run_config.get("fedpriv-provision", False) else None,
            **fedavg,
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Any:
        """Round 1: learn the model's layout from the initial arrays; every message names it."""
        if self.layout is None:
            if is_encrypted(arrays):
                raise ConfigError("EncryptedFedAvg starts from the app's plaintext initial arrays")
            self.layout = Layout.of(arrays)
            self.num_values = self.layout.size
            self.update_size = self.encoding.size(self.num_values)
        config[LAYOUT_KEY] = self.layout.to_json()
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Any:
        """As FedAvg's, naming the layout."""
        if self.layout is not None:
            config[LAYOUT_KEY] = self.layout.to_json()
        return FedAvg.configure_evaluate(self, server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Any) -> Any:
        """The app's evaluation metrics, as Flower's FedAvg aggregates them (plaintext)."""
        return FedAvg.aggregate_evaluate(self, server_round, replies)


def release_arrays(
    result: Result | ArrayRecord,
    key_dir: str | Path,
    initial_arrays: ArrayRecord,
    settings: CkksSettings | None = None,
) -> ArrayRecord:
    """The key holder's reading of an encrypted global model (``Result.arrays``), unverified.

    ``initial_arrays`` gives the layout. Whoever holds ``client.ctx`` can call this: keep
    it off the server.
    """
    record = result.arrays if isinstance(result, Result) else result
    ciphertexts, _ = split(record)
    layout = Layout.of(initial_arrays)
    holder = KeyHolder(key_dir, read_preset(key_dir).name)
    encoding = (settings or CkksSettings()).encoding(holder.preset)
    mean, _ = holder.decrypt_mean(encoding, ciphertexts, layout.size)
    return layout.unflatten(mean)

"""CKKS FedAvg: the server sums encrypted updates it cannot read and never holds a key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedpriv.adversaries.base import HONEST, ServerAdversary
from fedpriv.crypto.authenticated import Authenticator, attach, split
from fedpriv.crypto.encoding import NUM_METRICS, UpdateEncoding
from fedpriv.crypto.keys import CkksContext
from fedpriv.crypto.mac import Purpose
from fedpriv.crypto.packed import PackedContext
from fedpriv.crypto.packing import (
    add_encrypted,
    aggregate_form,
    deserialize_update,
    expected_layout,
)
from fedpriv.crypto.presets import CkksPreset
from fedpriv.errors import CiphertextFormatError, CryptoError, KeyMaterialError, ReplyCode
from fedpriv.flower_internals import log
from fedpriv.strategies.facts import ReportsFacts
from fedpriv.strategies.sampling import Sampling, init_fedavg

UPDATE_KEY = "arrays"
METRICS_KEY = "metrics"
EVALUATION_STATE = "evaluation"


class CkksFedAvg(FedAvg, ReportsFacts):
    """FedAvg over ciphertexts.

    Clients send their weighted update and its weight, encrypted
    (:mod:`fedpriv.crypto.encoding`); the server adds whatever arrived and broadcasts the
    encrypted sum, from which clients recover the weighted mean. The server learns no
    parameter, no sample count and no total; evaluation metrics arrive encrypted too and are
    summed the same way (the key holders read them).

    Parameters
    ----------
    context : CkksContext
        Parameters-only context of any backend. A context holding any key is refused.
    encoding : UpdateEncoding
        How clients lay out their updates (the server needs the payload sizes and the unit
        in which server-side noise is added).
    num_values : int
        Number of model parameters (the server knows the architecture, not the weights).
    sampling : Sampling | Mapping[str, Any]
        How many clients are trained and evaluated per round: fedpriv's sampling, or
        Flower ``FedAvg``'s own keyword arguments (an app that constructs its strategy as
        it would construct ``FedAvg``).
    authenticated : bool
        Whether uploads carry MAC tags (:mod:`fedpriv.crypto.authenticated`): the server then
        refuses an upload without one, or of another round or purpose, or from a sender it
        already summed this round, and adds the tags of what it sums. It cannot check a
        tag (it holds no key); the clients and the key holder do.
    adversary : ServerAdversary
        Chooses what is broadcast (:meth:`~fedpriv.adversaries.base.ServerAdversary.
        choose_broadcast`); the honest server broadcasts the sum.

    """

    def __init__(
        self,
        context: CkksContext,
        encoding: UpdateEncoding,
        num_values: int,
        sampling: Sampling | Mapping[str, Any],
        authenticated: bool = False,
        adversary: ServerAdversary = HONEST,
    ) -> None:
        held = context.held_keys()
        if held:
            raise KeyMaterialError(
                f"refusing to run: the server context holds {', '.join(held)}; the server "
                "must only hold CKKS parameters"
            )
        init_fedavg(self, sampling)
        ReportsFacts.__init__(self)
        self.context = context
        self.encoding = encoding
        self.preset: CkksPreset = encoding.preset
        self.num_values = num_values
        self.update_size = encoding.size(num_values)
        self.metric_size = encoding.size(NUM_METRICS)
        # The last aggregate the clients accepted (empty: the seed's model) and what was
        # broadcast this round.
        self.accepted = ArrayRecord()
        self.broadcast = ArrayRecord()
        self.adversary = adversary
        self.authenticated = authenticated

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember what is broadcast (to fall back on it), then configure as FedAvg does."""
        self.broadcast = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def summary(self) -> None:
        """Log the strategy's settings."""
        log(INFO, "\t├──> CKKS preset: %s (%s)", self.preset.name, self.preset.description)
        super().summary()

    def _parse_replies(
        self, server_round: int, replies: Iterable[Message], key: str, num_values: int
    ) -> dict[int, Upload]:
        """Parse each reply's ciphertexts (by node); reject (and log) any that are malformed."""
        parsed: dict[int, Upload] = {}
        senders: set[int] = set()
        purpose = Purpose.TRAIN if key == UPDATE_KEY else Purpose.EVALUATE
        rejected = self.round_facts(server_round).rejected
        for message in replies:
            node = message.metadata.src_node_id
            if message.has_error():
                log(
                    INFO,
                    "round %d: node %d replied with an error: %s",
                    server_round,
                    node,
                    message.error.reason,
                )
                continue
            try:
                if key not in message.content.array_records:
                    raise CiphertextFormatError(f"reply has no '{key}' ciphertext record")
                ciphertexts, auth = split(message.content.array_records[key])
                if self.authenticated:
                    _check_upload(auth, purpose, server_round, senders)
                    assert auth is not None
                    senders.add(auth.senders[0][0])
                vectors = deserialize_update(ciphertexts, self.context, self.preset, num_values)
                parsed[node] = Upload(vectors, auth if self.authenticated else None)
            except CiphertextFormatError as err:
                rejected[node] = f"{key}: {err}"
                log(WARNING, "round %d: rejected the reply of node %d: %s", server_round, node, err)
        return parsed

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Sum the encrypted updates that arrived intact; ``None`` if none did.

        Clients that find the broadcast aggregate corrupt (a sum under another key decrypts
        to a weight that is no sum of sample counts) refuse it with ``AGGREGATE_REJECTED``.
        If no update arrives and clients refused, the server falls back on the last aggregate
        that clients accepted, so one bad sum cannot stall the federation.
        """
        replies = list(replies)
        refused = sorted(
            m.metadata.src_node_id
            for m in replies
            if m.has_error() and m.error.code == ReplyCode.AGGREGATE_REJECTED
        )
        parsed = self._parse_replies(server_round, replies, UPDATE_KEY, self.update_size)
        log(INFO, "aggregate_train: adding %d encrypted updates", len(parsed))
        if not parsed:
            return (self.fall_back(server_round, refused) if refused else None), None
        self.accepted = self.broadcast
        facts = self.round_facts(server_round)
        facts.summed = len(parsed)
        summed = self._sum(list(parsed.values()), self.update_size)
        chosen = self.adversary.choose_broadcast(
            server_round, parsed, lambda uploads: self._sum(uploads, self.update_size)
        )
        summed = chosen if chosen is not None else summed
        facts.aggregate_form = aggregate_form(summed, self.preset)
        return summed, None

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Sum the encrypted evaluation metrics; kept in the round's checkpoint."""
        parsed = self._parse_replies(server_round, replies, METRICS_KEY, self.metric_size)
        if parsed:
            summed = self._sum(list(parsed.values()), self.metric_size)
            self.round_facts(server_round).state[EVALUATION_STATE] = summed
        return None

    def fall_back(self, server_round: int, refused: list[int]) -> ArrayRecord:
        """Log that ``refused`` refused this round's broadcast; return the last accepted.

        Clients refuse an aggregate that decrypts to an implausible total weight (a sum with
        an update under another key, or a corrupt one). Going back to the last aggregate
        they accepted (empty: the seed's model) keeps one bad sum from stalling the run.
        """
        log(
            WARNING,
            "round %d: %d client(s) refused the aggregate they were sent; reverting to the "
            "last aggregate they accepted",
            server_round,
            len(refused),
        )
        return self.accepted

    def add_plain(self, record: ArrayRecord, values: np.ndarray) -> ArrayRecord:
        """Add plaintext ``values`` to the model slots of an encrypted sum (no key needed).

        This is how server-side DP noise reaches a sum the server cannot read. The values
        are scaled as the clients' are (the encoding's unit of weight); the weight slots are
        left as they are.
        """
        if self.authenticated:
            raise CryptoError(
                "an authenticated sum takes nothing from the server: its clients add the "
                "noise in shares"
            )
        parsed = deserialize_update(record, self.context, self.preset, self.update_size)
        slots = np.zeros(self.update_size - self.num_values)
        plain = np.concatenate([np.asarray(values) / self.encoding.unit, slots])
        return self._sum([Upload(parsed, None)], self.update_size, plain=plain)

    def _sum(
        self, uploads: list[Upload], num_values: int, plain: np.ndarray | None = None
    ) -> ArrayRecord:
        sizes = expected_layout(num_values, self.preset)
        vectors = [u.ciphertexts for u in uploads]
        if isinstance(self.context, PackedContext):
            # The first upload's ciphertexts accumulate the sum: copy them, so that an
            # upload can be summed again (a recombination) and still be itself.
            vectors[0] = [replace(c, seeds=list(c.seeds)) for c in vectors[0]]
        record = add_encrypted(vectors, self.context, self.preset, sizes, plain=plain)
        if not self.authenticated:
            return record
        assert isinstance(self.context, PackedContext)
        auths = [u.auth for u in uploads if u.auth is not None]
        return attach(record, Authenticator.sum(auths, self.context.q))


@dataclass(frozen=True)
class Upload:
    """One reply's parsed ciphertexts and (authenticated) its authenticator."""

    ciphertexts: list[Any]
    auth: Authenticator | None


def _check_upload(
    auth: Authenticator | None, purpose: Purpose, server_round: int, senders: set[int]
) -> None:
    """What an honest server checks of an upload before summing it (it cannot check the tag).

    Raises
    ------
    CiphertextFormatError
        No authenticator, or one of another purpose or round, not of one sender, or of a
        sender already summed this round.

    """
    if auth is None:
        raise CiphertextFormatError("the upload carries no authenticator")
    if auth.purpose != purpose or auth.server_round != server_round or len(auth.senders) != 1:
        raise CiphertextFormatError(
            f"the upload's authenticator is for {auth.purpose.name.lower()} round "
            f"{auth.server_round} with {len(auth.senders)} sender(s), not one upload of "
            f"{purpose.name.lower()} round {server_round}"
        )
    if auth.senders[0][0] in senders:
        raise CiphertextFormatError(f"partition {auth.senders[0][0]} already uploaded this round")

"""Threshold-CKKS FedAvg: sum encrypted updates, have t parties decrypt the sum, broadcast it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from fedpriv.adversaries.base import HONEST, ServerAdversary
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.packing import deserialize_update, expected_layout
from fedpriv.crypto.thresholdwire import Summed, ThresholdWire
from fedpriv.errors import CiphertextFormatError
from fedpriv.flower_internals import log
from fedpriv.parameters import State, state_to_vector, vector_to_state
from fedpriv.schemes.threshold.messages import SignedUpload, UploadSignature, upload_digest
from fedpriv.schemes.threshold.server import ThresholdSession
from fedpriv.strategies.plaintext import PlaintextFedAvg
from fedpriv.strategies.sampling import Sampling
from fedpriv.wire import record_to_state, state_to_record

UPDATE_KEY = "arrays"


class ThresholdFedAvg(PlaintextFedAvg):
    """FedAvg whose updates only ``t`` parties together can read, one sum at a time.

    The server broadcasts the global model in plaintext (it learns each round's aggregate, as
    under SecAgg+), adds the encrypted updates that arrive intact, and asks the parties that
    uploaded for decryption shares of the sum (:class:`ThresholdSession`). The decrypted sum
    (drifts from the broadcast model, weighted, and the total weight) becomes the next global
    model. Evaluation is plaintext FedAvg's.

    Parameters
    ----------
    sampling : Sampling | Mapping[str, Any]
        How many clients are trained and evaluated per round (or Flower ``FedAvg``'s
        keyword arguments, as an app passes them).
    wire : ThresholdWire
        The preset's formats (no key).
    encoding : UpdateEncoding
        How clients lay out their updates (drift from the broadcast model).
    template : State
        The model's layout (names, shapes, dtypes).
    adversary : ServerAdversary
        What the server asks the parties besides the sum
        (:meth:`~fedpriv.adversaries.base.ServerAdversary.query_decryption`).

    """

    def __init__(
        self,
        sampling: Sampling | Mapping[str, Any],
        wire: ThresholdWire,
        encoding: UpdateEncoding,
        template: State,
        adversary: ServerAdversary = HONEST,
    ) -> None:
        super().__init__(sampling)
        self.wire = wire
        self.encoding = encoding
        self.template = template
        self.num_values = state_to_vector(template).size
        self.update_size = encoding.size(self.num_values)
        self.session: ThresholdSession | None = None
        self.reference = state_to_vector(template)
        # What the server asks the parties besides the sum (the honest one: nothing).
        self.adversary = adversary

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the broadcast model (the drifts' reference), then configure as FedAvg.

        Only parties of the key setup are trained: a node that left before it received the
        collective key cannot encrypt under it.
        """
        self.reference = state_to_vector(record_to_state(arrays))
        messages = super().configure_train(server_round, arrays, config, grid)
        if self.session is None or self.session.setup_state is None:
            return messages
        parties = self.session.setup_state.parties
        return [m for m in messages if m.metadata.dst_node_id in parties]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Sum the intact encrypted updates, have them decrypted, return the new model.

        ``None`` (the model is kept) if nothing arrived intact or fewer than ``t`` parties
        gave good decryption shares; the round's facts then say why.
        """
        if self.session is None:
            raise RuntimeError("ThresholdFedAvg needs its session (the scheme sets it)")
        facts = self.round_facts(server_round)
        parsed: dict[int, list[Any]] = {}
        evidence: dict[int, SignedUpload] = {}
        for message in replies:
            node = message.metadata.src_node_id
            if message.has_error():
                continue
            try:
                if UPDATE_KEY not in message.content.array_records:
                    raise CiphertextFormatError(f"reply has no '{UPDATE_KEY}' ciphertext record")
                record = message.content.array_records[UPDATE_KEY]
                upload = deserialize_update(record, self.wire, self.wire.preset, self.update_size)
                if self.session.authenticated:
                    evidence[node] = self._evidence(message, record)
                parsed[node] = upload
            except CiphertextFormatError as err:
                facts.rejected[node] = f"{UPDATE_KEY}: {err}"
                log(WARNING, "round %d: rejected the reply of node %d: %s", server_round, node, err)
        log(INFO, "aggregate_train: adding %d encrypted updates", len(parsed))
        if not parsed:
            return None, None
        nodes = sorted(parsed)
        # A fresh accumulator: the first upload stays itself (a malicious server may reuse it).
        total = [Summed(c.c0) for c in parsed[nodes[0]]]
        for node in nodes[1:]:
            for accumulator, ciphertext in zip(total, parsed[node], strict=True):
                self.wire.add_(accumulator, ciphertext)
        opened, rejected = self._decrypt(server_round, total, nodes, evidence)
        facts.rejected.update(rejected)
        facts.aggregate_form = "full"
        if opened is None:
            facts.unchanged = f"fewer than {self.session.threshold} parties gave decryption shares"
            return None, None
        facts.summed = len(nodes)
        mean, total_weight = opened
        log(INFO, "round %d: decrypted the sum of %d updates (weight %d)",
            server_round, len(nodes), total_weight)  # fmt: skip
        self.adversary.query_decryption(
            server_round,
            vector_to_state(self.reference, self.template),
            parsed,
            # The same decrypting set, asked for one upload (its own evidence only).
            lambda upload: self._decrypt(
                server_round,
                upload,
                [n for n in nodes if parsed[n] is upload],
                {n: e for n, e in evidence.items() if parsed[n] is upload},
                decrypting=nodes,
            )[0],
        )
        return state_to_record(mean), None

    def _evidence(self, message: Message, record: ArrayRecord) -> SignedUpload:
        """The signed upload a decrypting party checks (authenticated threshold CKKS).

        Raises
        ------
        CiphertextFormatError
            If the reply carries no signature.

        """
        signed = UploadSignature.from_record(message.content)
        return SignedUpload(signed.partition, signed.signature, upload_digest(record))

    def _decrypt(
        self,
        server_round: int,
        ciphertexts: list[Any],
        nodes: list[int],
        evidence: dict[int, SignedUpload] | None = None,
        decrypting: list[int] | None = None,
    ) -> tuple[tuple[State, int] | None, dict[int, str]]:
        """What ``ciphertexts`` (the sum of ``nodes``' updates) decrypt to: mean model, weight."""
        assert self.session is not None
        plaintexts, rejected = self.session.decrypt(
            server_round, ciphertexts, nodes, evidence, decrypting
        )
        if plaintexts is None:
            return None, rejected
        sizes = expected_layout(self.update_size, self.wire.preset)
        payload = np.concatenate(
            [self.wire.ckks.decode(p, size) for p, size in zip(plaintexts, sizes, strict=True)]
        )
        mean, total_weight = self.encoding.mean(payload, self.reference)
        return (vector_to_state(mean, self.template), round(total_weight)), rejected

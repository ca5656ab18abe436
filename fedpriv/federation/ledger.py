"""What a client remembers between messages, so that it answers each round once and never goes back.

A client that answers the same request twice, or an older one, is an oracle for a server
that deviates: two uploads for one round under two different models are a differencing
attack, two tags under one identity would reveal the MAC key's inner products
(:mod:`fedpriv.crypto.mac`), two decryption shares of one round break the smudging
analysis of threshold CKKS, and two signatures on two model digests of one round defeat
the consistency check. One ledger serves every such step (:class:`Step`); it lives in
Flower's ``Context.state`` of the client's node, which persists across the messages of one
run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flwr.app import ConfigRecord, RecordDict

from fedpriv.crypto.mac import Purpose
from fedpriv.errors import AggregateRejectedError, CryptoError

LEDGER = "fedpriv-ledger"


class Step(StrEnum):
    """A client's answer that it gives at most once per round, in increasing rounds."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    # A threshold party's decryption share.
    DECRYPT = "decrypt"
    # A signature on the digest of the round's model (model consistency).
    SIGN = "sign"

    @classmethod
    def of(cls, purpose: Purpose) -> Step:
        """The step that answers an upload of ``purpose``."""
        return cls.TRAIN if purpose == Purpose.TRAIN else cls.EVALUATE

    @property
    def key(self) -> str:
        """Its key in the ledger's record."""
        return f"{self.value}-round"


@dataclass
class Ledger:
    """The rounds a client answered and the last aggregate it accepted.

    Attributes
    ----------
    answered : dict[Step, int]
        The last round answered per step (0: none).
    accepted_run, accepted_round : int
        The run and round of the last aggregate accepted (round 0: none; the client then
        still starts from the seed's model).

    """

    answered: dict[Step, int]
    accepted_run: int = 0
    accepted_round: int = 0

    @classmethod
    def of(cls, state: RecordDict | None) -> Ledger:
        """The ledger kept in a node's state (a new one where there is none).

        Raises
        ------
        CryptoError
            Where the node has no state to keep it in.

        """
        if state is None:
            raise CryptoError("an authenticated client needs its node's state (Context.state)")
        record = state.config_records.get(LEDGER, ConfigRecord())
        answered = {step: _int(record.get(step.key, 0)) for step in Step}
        return cls(
            answered, _int(record.get("accepted-run", 0)), _int(record.get("accepted-round", 0))
        )

    def save(self, state: RecordDict | None) -> None:
        """Write the ledger back into the node's state."""
        if state is None:
            raise CryptoError("an authenticated client needs its node's state (Context.state)")
        record = ConfigRecord({step.key: self.answered[step] for step in Step})
        record["accepted-run"] = self.accepted_run
        record["accepted-round"] = self.accepted_round
        state.config_records[LEDGER] = record

    def check_fresh(self, step: Step, server_round: int) -> None:
        """Refuse a request for a round already answered (or an older one).

        Raises
        ------
        AggregateRejectedError
            Naming the step, the round asked and the last one answered.

        """
        last = self.answered[step]
        if server_round <= last:
            raise AggregateRejectedError(
                f"{step} request for round {server_round}: this client already answered round "
                f"{last} (one answer per round, rounds only increase)"
            )

    def answer(self, step: Step, server_round: int) -> None:
        """Record that the client answered ``server_round`` (before the answer leaves)."""
        self.check_fresh(step, server_round)
        self.answered[step] = server_round

    @classmethod
    def record_answer(cls, state: RecordDict | None, step: Step, server_round: int) -> None:
        """Check, record and save one answer in a node's state (refused: nothing written)."""
        ledger = cls.of(state)
        ledger.answer(step, server_round)
        ledger.save(state)

    def accept(self, run: int, server_round: int) -> None:
        """Record the aggregate the client now trains or evaluates on."""
        self.accepted_run, self.accepted_round = run, server_round


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CryptoError("the node's ledger is damaged")
    return value

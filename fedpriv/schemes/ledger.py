"""What a client remembers between messages, so that it answers each round once and never goes back.

A client that answers the same request twice, or an older one, is an oracle for a server
that deviates: two uploads for one round under two different models are a differencing
attack, and two tags under one identity would reveal the MAC key's inner products
(:mod:`fedpriv.crypto.mac`). The ledger lives in Flower's ``Context.state`` of the client's
node, which persists across the messages of one run.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from fedpriv.crypto.mac import Purpose
from fedpriv.errors import AggregateRejectedError, CryptoError

LEDGER = "fedpriv-ledger"
_KEYS = {Purpose.TRAIN: "train-round", Purpose.EVALUATE: "evaluate-round"}


@dataclass
class Ledger:
    """The rounds a client answered and the last aggregate it accepted.

    Attributes
    ----------
    answered : dict[Purpose, int]
        The last round answered per purpose (0: none).
    accepted_run, accepted_round : int
        The run and round of the last aggregate accepted (round 0: none; the client then
        still starts from the seed's model).

    """

    answered: dict[Purpose, int]
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
        answered = {p: _int(record.get(key, 0)) for p, key in _KEYS.items()}
        return cls(
            answered, _int(record.get("accepted-run", 0)), _int(record.get("accepted-round", 0))
        )

    def save(self, state: RecordDict | None) -> None:
        """Write the ledger back into the node's state."""
        if state is None:
            raise CryptoError("an authenticated client needs its node's state (Context.state)")
        record = ConfigRecord({key: self.answered[p] for p, key in _KEYS.items()})
        record["accepted-run"] = self.accepted_run
        record["accepted-round"] = self.accepted_round
        state.config_records[LEDGER] = record

    def check_fresh(self, purpose: Purpose, server_round: int) -> None:
        """Refuse a request for a round already answered (or an older one).

        Raises
        ------
        AggregateRejectedError
            Naming the round asked and the last one answered.

        """
        last = self.answered[purpose]
        if server_round <= last:
            raise AggregateRejectedError(
                f"{purpose.name.lower()} request for round {server_round}: this client already "
                f"answered round {last} (one answer per round, rounds only increase)"
            )

    def answer(self, purpose: Purpose, server_round: int) -> None:
        """Record that the client answered ``server_round`` (before the answer leaves)."""
        self.check_fresh(purpose, server_round)
        self.answered[purpose] = server_round

    def accept(self, run: int, server_round: int) -> None:
        """Record the aggregate the client now trains or evaluates on."""
        self.accepted_run, self.accepted_round = run, server_round


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CryptoError("the node's ledger is damaged")
    return value

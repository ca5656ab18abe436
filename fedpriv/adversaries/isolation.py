"""Model inconsistency: the target trains a working model, every other client a dead one.

Pasquini et al., "Eluding Secure Aggregation in Federated Learning via Model Inconsistency"
(CCS 2022): secure aggregation hides each update, but the server chooses the model each
client trains. Where it sends plaintext models it sends the target the real model (with the
meter unit dead) and every other sampled client a model in which every hidden unit is dead,
so that the round's aggregate is the target's update (:mod:`fedpriv.adversaries.crafting`).
"""

from __future__ import annotations

from flwr.app import Message, RecordDict

from fedpriv.adversaries.base import MaliciousServer, is_training
from fedpriv.adversaries.crafting import isolation_models
from fedpriv.adversaries.record import AttackRecord, SentModels
from fedpriv.flower_internals import legacy_fit_parameters, legacy_replace_fit_parameters
from fedpriv.parameters import State
from fedpriv.wire import record_to_state, state_to_record

ARRAYS = "arrays"
LEGACY_FIT = "fitins.parameters"


class Isolation(MaliciousServer):
    """Sends the target the isolation model and every other client of the round a dead one."""

    def tamper(self, messages: list[Message], server_round: int) -> None:
        """Replace the models of a training round's messages, once, when the target is in it."""
        if not self.ready(server_round):
            return
        carrying = [
            (m, found)
            for m in messages
            if is_training(m) and (found := self._model(m.content)) is not None
        ]
        target_node = self.target_node
        if (
            not carrying
            or target_node is None
            or target_node not in {m.metadata.dst_node_id for m, _ in carrying}
        ):
            return
        kind, state = carrying[0][1]
        target, others = self.craft(state)
        for message, _ in carrying:
            crafted = target if message.metadata.dst_node_id == target_node else others
            message.content = self._with_model(message.content, kind, crafted)
        record = AttackRecord(
            self.plan,
            server_round,
            target_node,
            sorted(n for m, _ in carrying if (n := m.metadata.dst_node_id) != target_node),
            self.aggregate,
        )
        self.record(
            record,
            SentModels(state, target, others),
            f"node {target_node} (partition {self.plan.target}) got the {self.attack} model, "
            f"{len(record.others)} other clients a dead one",
        )

    def craft(self, state: State) -> tuple[State, State]:
        """The target's model and everyone else's, from the honest ``state``."""
        return isolation_models(state)

    def _model(self, content: RecordDict) -> tuple[str, State] | None:
        """Where a training message carries the model (plain arrays or a legacy FitIns)."""
        if ARRAYS in content.array_records:
            return ARRAYS, record_to_state(content.array_records[ARRAYS])
        if LEGACY_FIT in content.array_records:
            arrays = legacy_fit_parameters(content)[0]
            return LEGACY_FIT, dict(zip(self.names, arrays, strict=True))
        return None

    @staticmethod
    def _with_model(content: RecordDict, kind: str, state: State) -> RecordDict:
        # Flower's strategies give every message of a round the same RecordDict: copy it.
        copy = RecordDict(dict(content.items()))
        if kind == ARRAYS:
            copy[ARRAYS] = state_to_record(state)
            return copy
        return legacy_replace_fit_parameters(copy, list(state.values()))

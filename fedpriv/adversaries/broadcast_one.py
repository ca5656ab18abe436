"""Recombination under single-key CKKS: one client's upload broadcast as the round's sum.

The keyless server cannot encrypt a model of its choosing, but it can broadcast any linear
combination of the uploads it holds (:mod:`fedpriv.adversaries.keyless` is the whole class);
this one has a single coefficient 1, the target's. Without authentication the clients
accept it and train on the target's model; the key holder's release would decrypt it. With
authentication every client refuses it (fewer than ``m`` senders) before decrypting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fedpriv.adversaries.base import Aggregate, MaliciousServer, Upload
from fedpriv.adversaries.record import AttackRecord, Outcome


class BroadcastOne(MaliciousServer):
    """Broadcasts the target's own upload as the aggregate, once."""

    # The clients of the next round read (or refuse) the broadcast.
    acts_on_next_round = True

    def choose_broadcast(
        self,
        server_round: int,
        uploads: Mapping[int, Upload],
        combine: Callable[[list[Upload]], Aggregate],
    ) -> Aggregate | None:
        """The target's upload alone, in the first round from the plan's on."""
        if not self.ready(server_round):
            return None
        # The roster names each node's partition; without it the server picks a node.
        target_node = self.nodes.get(self.plan.target, min(uploads, default=None))
        if target_node is None or target_node not in uploads:
            return None
        others = sorted(n for n in uploads if n != target_node)
        self.record(
            AttackRecord(self.plan, server_round, target_node, others, Outcome.RECOMBINED),
            None,
            f"broadcasting node {target_node}'s own upload as the aggregate",
        )
        return combine([uploads[target_node]])

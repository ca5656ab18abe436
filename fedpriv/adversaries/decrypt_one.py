"""Threshold decryption as an oracle: the parties asked for one client's upload.

Under threshold CKKS the parties give decryption shares for a ``c1`` the server sends them.
Passive protocols (Mouchet, Bertrand and Hubaux, JoC 2023, assume the decrypted ciphertext
is agreed on) let a party not tell the round's sum from one upload: the server crafts no
model, it asks the round's decrypting set for shares of the target's ciphertext besides
the sum, and reads the target's update exactly. Authenticated threshold CKKS refuses: each
party gives one share a round, for a sum of enough uploads whose signatures it checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fedpriv.adversaries.base import MaliciousServer, Upload
from fedpriv.adversaries.record import AttackRecord, Outcome, SentModels
from fedpriv.parameters import State


class DecryptOne(MaliciousServer):
    """Asks the decrypting parties for the target's own upload, once, in a round it uploaded in."""

    def query_decryption(
        self,
        server_round: int,
        reference: State,
        uploads: Mapping[int, Upload],
        decrypt: Callable[[Upload], tuple[State, int] | None],
    ) -> None:
        """Have the parties decrypt the target's upload; record what they answered."""
        target_node = self.target_node
        if not self.ready(server_round) or target_node is None or target_node not in uploads:
            return
        opened = decrypt(uploads[target_node])
        others = sorted(n for n in uploads if n != target_node)
        if opened is None:
            self.record(
                AttackRecord(self.plan, server_round, target_node, others, Outcome.REFUSED),
                None,
                f"the parties refused to decrypt node {target_node}'s upload",
            )
            return
        self.record(
            AttackRecord(self.plan, server_round, target_node, others, Outcome.DECRYPTED),
            SentModels(reference, reference, reference, opened[0]),
            f"the parties decrypted node {target_node}'s (partition {self.plan.target}) own "
            "upload for it",
        )

"""The server as an adversary: the points where it may deviate, honest unless a subclass plays.

A server's capabilities (DESIGN.md, "Active security") are what it sends, what it combines
and what it asks. Each is a hook here, called where the server does it:

- :meth:`ServerAdversary.tamper` and :meth:`ServerAdversary.observe`: by the recording Grid,
  on every message sent and every reply received (it may send different content to
  different clients);
- :meth:`ServerAdversary.choose_broadcast`: by a strategy that broadcasts a ciphertext
  (single-key CKKS): it may broadcast any combination of the uploads instead of their sum;
- :meth:`ServerAdversary.query_decryption`: by a strategy whose clients decrypt on request
  (threshold CKKS): it may ask for any ciphertext besides the sum.

The base class follows the protocol at every hook (:data:`HONEST`); a malicious server
overrides the hooks its manipulation needs. Which schemes offer a hook is declared in
:data:`fedpriv.registry.ADVERSARIES` (the traits each adversary requires), so a
configuration is checked without importing any of this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from logging import WARNING
from typing import TypeVar

from flwr.app import ConfigRecord, Message, MessageType, MetricRecord

from fedpriv.adversaries.record import PLAN_FILE, AttackRecord, Outcome, SentModels, write_attack
from fedpriv.adversary import Adversary, ServerAttack
from fedpriv.config import RunConfig
from fedpriv.flower_internals import log
from fedpriv.parameters import State
from fedpriv.registry import ADVERSARIES
from fedpriv.rundir import RunDirectory
from fedpriv.task import initial_state

Upload = TypeVar("Upload")
Aggregate = TypeVar("Aggregate")


class ServerAdversary:
    """The server at the points where it could deviate; this base class follows the protocol."""

    # Whether what it does shows in the round after it acts (a broadcast clients read then).
    acts_on_next_round = False

    def observe(self, replies: Iterable[Message]) -> None:
        """Learn from the replies the grid received."""
        return None

    def tamper(self, messages: list[Message], server_round: int) -> None:
        """Alter ``messages`` (in place) before the grid records and sends them."""
        return None

    def choose_broadcast(
        self,
        server_round: int,
        uploads: Mapping[int, Upload],
        combine: Callable[[list[Upload]], Aggregate],
    ) -> Aggregate | None:
        """The aggregate to broadcast instead of the sum of ``uploads`` (``None``: the sum).

        Parameters
        ----------
        server_round : int
            The round.
        uploads : Mapping[int, Upload]
            Node -> its parsed upload.
        combine : Callable
            The strategy's own sum of the given uploads.

        """
        return None

    def query_decryption(
        self,
        server_round: int,
        reference: State,
        uploads: Mapping[int, Upload],
        decrypt: Callable[[Upload], tuple[State, int] | None],
    ) -> None:
        """Ask the decrypting parties for more than the round's sum.

        Parameters
        ----------
        server_round : int
            The round.
        reference : State
            The model the round broadcast.
        uploads : Mapping[int, Upload]
            Node -> its parsed ciphertexts.
        decrypt : Callable
            Asks the round's decrypting set for shares of the given ciphertexts and returns
            what they decrypt to (the trained model and its weight), or ``None`` if refused.

        """
        return None


HONEST = ServerAdversary()


def _partition(reply: Message) -> int | None:
    content = reply.content
    records: list[MetricRecord | ConfigRecord] = [
        *content.metric_records.values(),
        *content.config_records.values(),
    ]
    for record in records:
        value = record.get("partition-id")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None


def is_training(message: Message) -> bool:
    """Whether ``message`` belongs to training (everything but evaluation)."""
    return not message.metadata.message_type.startswith(MessageType.EVALUATE)


class MaliciousServer(ServerAdversary):
    """A server that plays one :class:`~fedpriv.adversary.Adversary` plan, once, then is honest.

    It learns which node holds which partition from the replies (clients name it), acts in
    the first round from ``plan.round`` on in which its hook sees the target, and writes what
    it did to the run directory for the attacks to read afterwards.

    Parameters
    ----------
    plan : Adversary
        The attack, its target and first round.
    config : RunConfig
        The run's configuration.
    rundir : RunDirectory
        Where the record goes.
    aggregate : Outcome
        How the scheme's server combines the replies (``models`` or ``drifts``).
    names : list[str]
        The model's state-dict names (legacy messages carry unnamed arrays in this order).

    """

    def __init__(
        self,
        plan: Adversary,
        config: RunConfig,
        rundir: RunDirectory,
        aggregate: Outcome,
        names: list[str],
    ) -> None:
        if plan.attack is None:
            raise ValueError("an honest plan has no malicious server")
        self.plan = plan
        self.attack: ServerAttack = plan.attack
        self.config = config
        self.rundir = rundir
        self.aggregate = aggregate
        self.names = names
        self.nodes: dict[int, int] = {}
        # A resumed run's server acted already if its record is there.
        self.done = (rundir.path / PLAN_FILE).is_file()

    def observe(self, replies: Iterable[Message]) -> None:
        """Note the partition each replying node names."""
        for reply in replies:
            if not reply.has_error():
                partition = _partition(reply)
                if partition is not None:
                    self.nodes[partition] = reply.metadata.src_node_id

    @property
    def target_node(self) -> int | None:
        """The target's node, once a reply named its partition."""
        return self.nodes.get(self.plan.target)

    def ready(self, server_round: int) -> bool:
        """Whether it may still act in ``server_round`` (not yet acted, plan's round reached)."""
        return not self.done and server_round >= self.plan.round

    def record(self, record: AttackRecord, sent: SentModels | None, message: str) -> None:
        """Write what it did, once, and say so in the server's log."""
        write_attack(self.rundir, record, sent)
        self.done = True
        log(WARNING, "malicious server: round %d: %s", record.server_round, message)


def server_adversary(
    config: RunConfig, rundir: RunDirectory, aggregate: Outcome = Outcome.MODELS
) -> ServerAdversary:
    """The run's server: :data:`HONEST`, or the adversary its ``adversary`` key plans."""
    plan = config.adversary_plan
    if plan.attack is None:
        return HONEST
    kind: type[MaliciousServer] = ADVERSARIES.load(plan.attack)
    return kind(plan, config, rundir, aggregate, list(initial_state(config)))

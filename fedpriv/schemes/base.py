"""The interface every aggregation scheme implements, on the server, the client and after a run.

One module: the interface is one contract (server, client and post-run sides of a scheme),
and its default methods are the honest behaviour every scheme overrides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedpriv.adversaries.base import HONEST, ServerAdversary, server_adversary
from fedpriv.config import RunConfig
from fedpriv.crypto.files import write_private, write_public
from fedpriv.crypto.signing import IDENTITIES_DIR, ROSTER_FILE, provision_identities
from fedpriv.defenses.base import Defense, Numbers, load_defense
from fedpriv.errors import ConfigError
from fedpriv.federation.consistency import ConsistentGrid, consistency_mod
from fedpriv.federation.recording import RecordingGrid
from fedpriv.federation.rounds import RoundLoop, RoundPolicy
from fedpriv.history import History
from fedpriv.parameters import State, state_to_vector
from fedpriv.registry import SCHEMES, Trait
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.sight import Sight
from fedpriv.task import sampled_per_round
from fedpriv.training import LocalUpdate
from fedpriv.wire import arrays_of, record_to_state

# Every query of a scheme's own protocol (threshold CKKS's key setup and decryption): the
# ClientApp hands it to the run's scheme (``ClientCodec.query``) without naming the scheme.
PROTOCOL_MESSAGE = "query.protocol"
# A Flower ClientApp mod: (message, context, next handler) -> reply.
Mod = Callable[[Message, Context, Callable[[Message, Context], Message]], Message]


@dataclass(frozen=True)
class Node:
    """Where a ClientApp runs: its partition, the federation's size, its own key directory.

    Attributes
    ----------
    partition_id, num_partitions : int
        From the SuperNode's ``node-config``.
    key_dir : str
        The key directory of this node (a deployment mounts the secret key on the node; in
        simulation it is the run's ``key-dir``).
    state : RecordDict | None
        What the node keeps between messages (Flower's ``Context.state``).

    """

    partition_id: int
    num_partitions: int
    key_dir: str
    state: RecordDict | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DeploymentKeys:
    """A deployment's key set: the clients' (secret) folder and the server's (parameters).

    ``nodes``: a folder of each node's own (partition -> folder), where a scheme gives each
    client a key nobody else holds (signing keys); otherwise every node gets ``client``.
    """

    client: Path
    server: Path | None
    nodes: dict[int, Path] = field(default_factory=dict)

    def node_dir(self, partition: int) -> Path:
        """The key folder of the node holding ``partition``."""
        return self.nodes.get(partition, self.client)


@dataclass(frozen=True)
class Evaluation:
    """A client's evaluation of the global model on its test split."""

    loss: float
    accuracy: float
    num_examples: int


class ClientCodec(ABC):
    """How a client reads the server's broadcast and writes its replies under one scheme."""

    @abstractmethod
    def read(self, msg: Message) -> tuple[State, int]:
        """The global model a train or evaluate message carries, and the server round.

        Raises
        ------
        AggregateRejectedError, CiphertextFormatError
            If the broadcast cannot be trusted (corrupt, or summed under another key).

        """

    @abstractmethod
    def train_reply(self, msg: Message, update: LocalUpdate) -> RecordDict:
        """The content of the reply to a train message."""

    @abstractmethod
    def evaluate_reply(self, msg: Message, evaluation: Evaluation) -> RecordDict:
        """The content of the reply to an evaluate message."""

    def query(self, msg: Message) -> RecordDict:
        """The content of the reply to a protocol query (schemes with more than two phases).

        The server sends its protocol's steps as :data:`PROTOCOL_MESSAGE` queries; the
        ClientApp hands every one to the run's scheme here, whatever the scheme.

        Raises
        ------
        ConfigError
            The scheme has no such protocol.

        """
        raise ConfigError(f"this scheme answers no query ({msg.metadata.message_type})")


class AggregationScheme(ABC):
    """One way of aggregating updates, from provisioning to release and what attackers see.

    A scheme is chosen by the ``aggregation`` run-config key through
    :data:`fedpriv.registry.SCHEMES`; nothing else in fedpriv compares that name.

    Parameters
    ----------
    config : RunConfig
        The run.

    """

    name: ClassVar[str]
    # Whether a server restarted mid-run can continue from its last checkpoint.
    resumable: ClassVar[bool] = True
    # Whether the key holders must release the model (the server cannot read it).
    needs_release: ClassVar[bool] = False
    # Whether the scheme hides nothing from the server (the baseline a comparison measures by).
    hides_nothing: ClassVar[bool] = False

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.defense: Defense = load_defense(config)

    # -- before the run: the key holders ------------------------------------------------------
    def provision(self, rundir: RunDirectory) -> RunConfig:
        """Prepare what the run needs before it starts (keys); return the run's config.

        Where clients check model consistency, the run's key folder receives every client's
        signing key and the roster.
        """
        if not self.checks_consistency():
            return self.config
        key_dir = Path(self.config.key_dir) if self.config.key_dir else rundir.key_dir
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        provision_identities(key_dir, range(self.config.num_nodes), self.min_signers())
        return self.config.replace(key_dir=str(key_dir.resolve()))

    def provision_deployment(self, keys: Path) -> DeploymentKeys | None:
        """Make a deployment's key set under ``keys`` (``None``: the scheme needs none).

        Where clients check model consistency: each node's own folder with its signing key
        and the roster.
        """
        if not self.checks_consistency():
            return None
        return identity_folders(keys, self.config.num_nodes, self.min_signers())

    def checks_consistency(self) -> bool:
        """Whether clients check that every client of a round got the same plaintext model.

        Schemes whose server sends plaintext models (and so could send the target another
        one), unless ``model-consistency`` is off.
        """
        provides = SCHEMES.entry(self.name).provides
        return self.config.model_consistency and Trait.PLAINTEXT_BROADCAST in provides

    def min_signers(self) -> int:
        """Fewest clients that must sign one model digest.

        ``auth-min-uploads``, capped at the clients a round samples.
        """
        return min(self.config.auth_min_uploads, sampled_per_round(self.config)[0])

    def consistent(self, grid: Grid) -> Grid:
        """``grid`` decorated with the consistency round where clients check it."""
        if not self.checks_consistency():
            return grid
        return ConsistentGrid(grid, RoundPolicy.from_config(self.config).timeout)

    # -- the server ---------------------------------------------------------------------------
    def check_server(self) -> None:
        """Refuse, before the server writes anything, what would fail later (keys)."""
        return None

    @abstractmethod
    def strategy(self, adversary: ServerAdversary = HONEST) -> tuple[Strategy, ArrayRecord]:
        """The server's strategy (without defenses) and the arrays it starts from.

        ``adversary`` is the server at the points where the strategy could deviate (it
        chooses what is broadcast or asked); the grid gets the same one for its messages.
        """

    def serve(
        self,
        grid: Grid,
        context: Context,
        rundir: RunDirectory,
        history: History,
        resume_from: ArrayRecord | None,
    ) -> None:
        """Run the federation's rounds after those in ``history``; write the run directory."""
        grid = self.consistent(grid)
        adversary = server_adversary(self.config, rundir)
        strategy, arrays = self.strategy(adversary)
        if resume_from is not None:
            arrays = resume_from
            self.resumed(strategy, arrays)
        strategy = self.defense.wrap_strategy(strategy)
        strategy.summary()
        recording = RecordingGrid(grid, rundir, self.config.recorded_rounds, adversary=adversary)
        policy = RoundPolicy.from_config(self.config)
        loop = RoundLoop(recording, strategy, rundir, history, policy)
        final = loop.run(arrays, len(history) + 1, self.config.num_server_rounds)
        self.finish(rundir, final)

    def resumed(self, strategy: Strategy, arrays: ArrayRecord) -> None:
        """Tell a fresh strategy that the run continues from ``arrays``."""
        return None

    def finish(self, rundir: RunDirectory, final: ArrayRecord) -> None:
        """Work once the last round is over (write the model, where the server holds it)."""
        return None

    # -- the client ---------------------------------------------------------------------------
    def client_mods(self) -> list[Mod]:
        """Flower mods the ClientApp runs under this scheme (the consistency check's)."""
        return [consistency_mod] if self.checks_consistency() else []

    @abstractmethod
    def codec(self, node: Node) -> ClientCodec:
        """How a client on ``node`` reads broadcasts and writes replies."""

    # -- after the run: the key holders --------------------------------------------------------
    def release(self, rundir: RunDirectory, key_dir: str | Path | None = None) -> None:
        """Write ``model.pt`` (and readable metrics) if the server could not."""
        return None

    def round_models(
        self, rundir: RunDirectory, key_dir: str | Path | None = None
    ) -> list[np.ndarray]:
        """Each round's global model as a flat vector (as the key holders can read it)."""
        return [
            state_to_vector(record_to_state(arrays_of(rundir.read_checkpoint(r))))
            for r in rundir.checkpoint_rounds()
        ]

    # -- attackers ----------------------------------------------------------------------------
    def server_sight(self, rundir: RunDirectory) -> Sight:
        """What the (curious) server reads of the run."""
        return Sight(rundir, self.config)

    def coalition_sight(
        self, rundir: RunDirectory, colluders: int, key_dir: str | Path | None = None
    ) -> Sight:
        """What the server reads together with ``colluders`` clients."""
        return self.server_sight(rundir)

    def decrypting_coalition(self) -> int:
        """Clients that must join the server to read an individual update (0: it reads them).

        Comparisons measure coalitions just below and at this size where it is 2 or more.
        """
        return 0

    def unprotected(self) -> bool:
        """Whether this run has no protection at all: the reference arm of a comparison."""
        return self.hides_nothing and not self.defense.protects

    def narrative(self, arm: Numbers) -> list[str]:
        """Sentences, from an arm's numbers, on what this scheme hides and from whom."""
        return []

    def holds_against(self) -> str:
        """The adversary the run's aggregation holds against, as the tests play it.

        ``passive``: the server follows the protocol; ``deviating``: it may send, ask, relay
        and compute anything it can (``tests/adversarial``); ``c``: colluding clients.
        """
        return "nothing: the server reads every update"


def identity_folders(keys: Path, num_nodes: int, min_signers: int) -> DeploymentKeys:
    """A deployment's identities: the roster once, then each node's folder with its own key.

    ``keys/roster`` holds every key (the provisioner's copy); ``keys/node-<p>`` the roster
    and partition ``p``'s key only, so that no node holds another's.
    """
    everything = keys / "roster"
    roster = provision_identities(everything, range(num_nodes), min_signers)
    nodes = {}
    for partition in roster.keys:
        folder = keys / f"node-{partition}"
        (folder / IDENTITIES_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"party-{partition}.key"
        write_private(
            folder / IDENTITIES_DIR / name, (everything / IDENTITIES_DIR / name).read_bytes()
        )
        write_public(folder / ROSTER_FILE, (everything / ROSTER_FILE).read_bytes())
        nodes[partition] = folder
    return DeploymentKeys(everything, None, nodes)


def load_scheme(config: RunConfig) -> AggregationScheme:
    """The scheme a run asks for (``aggregation`` run-config key), with its defense."""
    scheme: AggregationScheme = SCHEMES.load(config.aggregation)(config)
    return scheme


__all__ = [
    "AggregationScheme",
    "ClientCodec",
    "Evaluation",
    "Mod",
    "Node",
    "load_scheme",
]

"""Threshold CKKS: no party can decrypt alone; t clients together decrypt only what is summed.

One package per protocol: :mod:`~fedpriv.schemes.threshold.messages` (every stage's typed
message and what parties sign), :mod:`~fedpriv.schemes.threshold.state` (a party's typed
state), :mod:`~fedpriv.schemes.threshold.party` (the client), :mod:`~fedpriv.schemes.
threshold.server` (key setup and decryption on the server), :mod:`~fedpriv.schemes.
threshold.strategy` (the FedAvg around it), :mod:`~fedpriv.schemes.threshold.sight` (what
a server with colluding parties reads) and this module, the scheme that ties them together.
"""

from __future__ import annotations

import time
from pathlib import Path

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedpriv.adversaries.base import HONEST, ServerAdversary, server_adversary
from fedpriv.adversaries.record import Outcome
from fedpriv.config import RunConfig
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.signing import provision_identities
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire
from fedpriv.defenses.base import Numbers
from fedpriv.federation.recording import RecordingGrid
from fedpriv.federation.rounds import RoundLoop, RoundPolicy, wait_for_nodes
from fedpriv.history import History
from fedpriv.models import state_to_bytes
from fedpriv.registry import APP_DATA_PREFIX, Aggregation
from fedpriv.rundir import RunDirectory, write_json
from fedpriv.schemes.base import (
    AggregationScheme,
    ClientCodec,
    DeploymentKeys,
    Node,
    identity_folders,
)
from fedpriv.schemes.sight import Blind, Sight
from fedpriv.schemes.threshold.messages import encoding, stage_of
from fedpriv.schemes.threshold.party import PartyParams, ThresholdCodec
from fedpriv.schemes.threshold.server import ThresholdSession
from fedpriv.schemes.threshold.sight import ThresholdSight
from fedpriv.schemes.threshold.strategy import ThresholdFedAvg
from fedpriv.strategies.sampling import Sampling
from fedpriv.task import initial_state, sampled_per_round
from fedpriv.wire import record_to_state, state_to_record

SETUP_FILE = "threshold.json"
# A run recorded from a Flower app encrypts with ``fedpriv.flower.threshold``'s encoding
# (its own bounds), which the coalition's decryption does not read.
APP_COALITION = (
    "colluding parties' decryption of a Flower app's uploads (fedpriv.flower's encoding) is "
    "not modelled; t of them together decrypt any upload, fewer read no individual one"
)


class ThresholdScheme(AggregationScheme):
    """Multiparty CKKS: each client encrypts under its own secret, t of them decrypt each sum."""

    name = Aggregation.CKKS_THRESHOLD
    # The parties' shares live in Flower's node state: a restarted server cannot reuse them.
    resumable = False

    def provision(self, rundir: RunDirectory) -> RunConfig:
        """The run's key folder, where each party's Shamir share (0600) lands in simulation.

        Authenticated, it first receives every client's signing key and the roster.
        """
        key_dir = Path(self.config.key_dir) if self.config.key_dir else rundir.key_dir
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.config.threshold_authenticated or self.checks_consistency():
            provision_identities(key_dir, range(self.config.num_nodes), self.min_uploads())
        return self.config.replace(key_dir=str(key_dir.resolve()))

    def provision_deployment(self, keys: Path) -> DeploymentKeys | None:
        """Each node's own folder with its signing key and the roster (where it signs)."""
        if not (self.config.threshold_authenticated or self.checks_consistency()):
            return None
        return identity_folders(keys, self.config.num_nodes, self.min_uploads())

    def min_signers(self) -> int:
        """The consistency round asks as many signers as a sum needs uploads."""
        return self.min_uploads()

    def min_uploads(self) -> int:
        """Fewest signed uploads a party decrypts a sum of.

        At least ``t`` and ``auth-min-uploads``, capped at the clients a round samples: a
        server with ``c`` colluding clients reads a sum of ``m`` uploads, ``m - c`` of them
        honest, so one honest update stays hidden while ``c <= m - 2``; with ``m >= t`` that
        covers every coalition that cannot decrypt anyway but the largest (``c = t - 1``).
        """
        wanted = max(self.config.auth_min_uploads, self.config.decryption_threshold)
        return min(wanted, sampled_per_round(self.config)[0])

    def strategy(self, adversary: ServerAdversary = HONEST) -> tuple[Strategy, ArrayRecord]:
        """Threshold FedAvg from the seed's initial model (in plaintext: it is public)."""
        template = initial_state(self.config)
        wire = ThresholdWire(ThresholdCkks(get_preset(self.config.threshold_preset)))
        strategy = ThresholdFedAvg(
            Sampling.from_config(self.config), wire, encoding(self.config), template, adversary
        )
        return strategy, state_to_record(template)

    def serve(
        self,
        grid: Grid,
        context: Context,
        rundir: RunDirectory,
        history: History,
        resume_from: ArrayRecord | None,
    ) -> None:
        """Set up the parties' keys and shares with the connected clients, then run the rounds."""
        grid = self.consistent(grid)
        # Clients encrypt their drift from the model they received: the sum holds drifts.
        adversary = server_adversary(self.config, rundir, Outcome.DRIFTS)
        strategy, arrays = self.strategy(adversary)
        assert isinstance(strategy, ThresholdFedAvg)
        strategy.summary()
        recording = RecordingGrid(
            grid, rundir, self.config.recorded_rounds, stage_of, adversary=adversary
        )
        policy = RoundPolicy.from_config(self.config)
        started = time.perf_counter()
        wait_for_nodes(recording, self.config.num_clients, policy.node_wait)
        session = ThresholdSession(
            recording,
            strategy.wire,
            self.config.decryption_threshold,
            policy.timeout,
            authenticated=self.config.threshold_authenticated,
        )
        recording.current_round = 1  # the setup's bytes count in round 1
        setup = session.setup(list(recording.get_node_ids()), started)
        write_json(rundir.path / SETUP_FILE, setup.to_json())
        strategy.session = session
        loop = RoundLoop(recording, strategy, rundir, history, policy)
        final = loop.run(arrays, len(history) + 1, self.config.num_server_rounds)
        rundir.write_model(state_to_bytes(record_to_state(final)))

    def codec(self, node: Node) -> ClientCodec:
        """A party of the protocol."""
        return ThresholdCodec(PartyParams.of(self.config), node)

    def server_sight(self, rundir: RunDirectory) -> Sight:
        """Ciphertexts, and each round's aggregate in plaintext (after decryption)."""
        return ThresholdSight(rundir, self.config, 0, None)

    def decrypting_coalition(self) -> int:
        """``t``: that many key shares decrypt anything."""
        return self.config.decryption_threshold

    def coalition_sight(
        self, rundir: RunDirectory, colluders: int, key_dir: str | Path | None = None
    ) -> Sight:
        """``colluders`` parties' shares: everything from ``t`` on, nothing individual below."""
        if colluders >= 1 and self.config.dataset.startswith(APP_DATA_PREFIX):
            return Blind(rundir, self.config, APP_COALITION, models=True)
        return ThresholdSight(rundir, self.config, colluders, key_dir)

    def holds_against(self) -> str:
        """Authenticated: a deviating server with ``c <= min(t - 1, m - 2)`` colluders."""
        t = self.config.decryption_threshold
        if self.config.threshold_authenticated:
            return f"a deviating server, c <= {min(t - 1, self.min_uploads() - 2)}"
        return f"a passive server, c <= {t - 1}"

    def narrative(self, arm: Numbers) -> list[str]:
        """Who can read what, with this run's t (and m, where the protocol is authenticated)."""
        t, n = self.config.decryption_threshold, self.config.num_clients
        split = (
            f"Threshold CKKS splits the key among the {n} clients: decrypting anything takes "
            f"{t} of them, and the server reads each round's aggregate (as under SecAgg+)."
        )
        if not self.config.threshold_authenticated:
            return [
                f"{split} A server that follows the protocol asks the parties to decrypt each "
                f"round's sum only, so it reads no individual update unless {t} clients collude "
                "with it; under this passive protocol the parties cannot tell a sum from one "
                "upload, so this holds against an honest server only (the malicious-server "
                "result above says what a deviating one reads)."
            ]
        m = self.min_uploads()
        return [
            f"{split} Each party gives one decryption share a round, only for a sum of at "
            f"least {m} uploads of that round whose signatures it checked, after checking the "
            "collective key and the share channels at setup: against a deviating server "
            f"with up to {min(t - 1, m - 2)} colluding clients no individual update is "
            f"readable ({self.holds_against()}; tests/adversarial/test_deviating_threshold.py "
            "plays each manipulation, and one colluder more reads the target from a sum of "
            f"{m})."
        ]

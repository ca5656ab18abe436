"""Threat-model views: exactly what the curious server, a coalition and an outsider see.

One module: the views are one hierarchy over one run directory; what each threat may see is
easiest to audit side by side.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fedpriv.adversaries.record import AttackRecord, Isolated, Outcome, isolate, read_attack
from fedpriv.adversary import ServerAttack
from fedpriv.attacks.results import OUTPUTS, Threat
from fedpriv.config import RunConfig
from fedpriv.defenses.base import ReleasedModel
from fedpriv.device import torch_device
from fedpriv.errors import ConfigError
from fedpriv.models import load_state, state_from_bytes
from fedpriv.registry import APP_DATA_PREFIX, SCHEMES, Trait, adversary_refusal
from fedpriv.rundir import RELEASE_REFUSED, RunDirectory
from fedpriv.schemes.base import load_scheme
from fedpriv.schemes.sight import NotVisible, ObservedUpdate, Sight
from fedpriv.task import new_model
from fedpriv.wire import arrays_of, record_to_state


class Capability(StrEnum):
    """Something an attacker may hold; attacks declare which they need."""

    CLIENT_UPDATES = "individual client updates"
    AGGREGATE_UPDATES = "each round's aggregate update (consecutive global models)"
    WHITE_BOX_MODEL = "the global model's weights"
    QUERY_PROBABILITIES = "confidence scores of the released model"
    QUERY_LABELS = "predicted labels of the released model"
    POPULATION_DATA = "records of the population to test and to train shadow models on"
    ISOLATED_UPDATE = "one chosen client's update, isolated from an aggregate by crafted models"


class NotApplicable(Exception):
    """The attacker's view cannot provide what the attack needs; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class View:
    """What one threat holds of a run: capabilities, each available or missing (with why).

    ``possible`` is every capability this kind of attacker can ever hold, whatever the
    scheme: an attack needing anything else never applies to the threat (and is refused
    when asked for). :meth:`missing` says why an available-in-principle capability is not
    available on this run.
    """

    threat: ClassVar[Threat]
    possible: ClassVar[frozenset[Capability]]

    def __init__(self, run_dir: str | Path, config: RunConfig | None = None) -> None:
        self.rundir = RunDirectory(run_dir)
        self.config: RunConfig = config or self.rundir.read_config()

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        *,
        output: str = "probabilities",
        colluders: int = 1,
        key_dir: str | Path | None = None,
        config: RunConfig | None = None,
    ) -> View:
        """Open the view on a run, taking the settings that apply to it from the keywords.

        ``output`` is what an outsider's queries return, ``colluders`` how many clients join
        the server, ``key_dir`` whose keys they bring; ``config`` is the run's configuration
        as the attacker takes it (default: the run's own).
        """
        return cls(run_dir, config=config)

    def missing(self, capability: Capability) -> str | None:
        """Why ``capability`` is not available on this run (``None``: it is)."""
        if capability not in self.possible:
            return f"the {self.threat} view never holds {capability}"
        return None

    def require(self, needs: frozenset[Capability]) -> None:
        """Raise :class:`NotApplicable` with the first reason a need is not met."""
        for capability in sorted(needs):
            reason = self.missing(capability)
            if reason is not None:
                raise NotApplicable(reason)


class SightView(View):
    """A party reading the run's server view through its scheme's :class:`Sight`."""

    possible = frozenset(
        {Capability.CLIENT_UPDATES, Capability.AGGREGATE_UPDATES, Capability.WHITE_BOX_MODEL}
    )

    def __init__(
        self, run_dir: str | Path, sight: Sight | None = None, config: RunConfig | None = None
    ) -> None:
        super().__init__(run_dir, config)
        self.sight = sight or load_scheme(self.config).server_sight(self.rundir)

    @property
    def rounds(self) -> list[int]:
        """Rounds with a checkpoint."""
        return self.sight.rounds

    def missing(self, capability: Capability) -> str | None:
        """Individual updates and models are as visible as the scheme lets this party see."""
        if capability == Capability.CLIENT_UPDATES:
            return self.sight.updates_hidden()
        if capability == Capability.AGGREGATE_UPDATES:
            return self.sight.models_hidden() or (None if self.rounds else "no checkpoint")
        if capability == Capability.WHITE_BOX_MODEL:
            return self.sight.models_hidden()
        return super().missing(capability)

    def global_model(self, server_round: int) -> np.ndarray:
        """The global model at the start of ``server_round`` (flat), as this party reads it."""
        try:
            return self.sight.global_model(server_round)
        except NotVisible as err:
            raise NotApplicable(err.reason) from err

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every client update of ``server_round`` this party reads."""
        try:
            return self.sight.updates(server_round)
        except NotVisible as err:
            raise NotApplicable(err.reason) from err

    def aggregates(self, rounds: list[int]) -> list[ObservedUpdate]:
        """The aggregate update of each of ``rounds`` this party reads."""
        try:
            return [self.sight.aggregate(r) for r in rounds]
        except NotVisible as err:
            raise NotApplicable(err.reason) from err

    def final_model(self) -> torch.nn.Module:
        """The last global model this party holds in plaintext."""
        try:
            state = self.sight.final_state()
        except NotVisible as err:
            raise NotApplicable(err.reason) from err
        model = new_model(self.config)
        load_state(model, state)
        return model.to(torch_device(self.config.device))


class ServerView(SightView):
    """The curious server: ``server_view/`` and a parameters-only context, nothing else."""

    threat = Threat.CURIOUS_SERVER


class CoalitionView(SightView):
    """The server together with ``colluders`` clients (and their keys, where they hold any).

    Parameters
    ----------
    run_dir : str | Path
        The run.
    colluders : int
        Clients colluding with the server.
    key_dir : str | Path | None
        The colluding clients' key directory (default: the run's ``key-dir``).

    """

    threat = Threat.COLLUDING_CLIENT

    def __init__(
        self,
        run_dir: str | Path,
        colluders: int = 1,
        key_dir: str | Path | None = None,
        config: RunConfig | None = None,
    ) -> None:
        if colluders < 1:
            raise ConfigError(f"a coalition needs at least one client, got {colluders}")
        rundir = RunDirectory(run_dir)
        scheme = load_scheme(config or rundir.read_config())
        super().__init__(run_dir, scheme.coalition_sight(rundir, colluders, key_dir), config)
        self.colluders = colluders

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        *,
        output: str = "probabilities",
        colluders: int = 1,
        key_dir: str | Path | None = None,
        config: RunConfig | None = None,
    ) -> View:
        """The coalition of ``colluders`` clients holding ``key_dir``."""
        return cls(run_dir, colluders, key_dir, config)


# Why a server that may only send ciphertexts cannot play the model-crafting attacks.
CIPHERTEXT_ONLY = (
    "the run's server followed the protocol, and under single-key CKKS it sends and reads "
    "ciphertexts only; what a server that deviates gets is measured on a run with "
    "--adversary malicious-server:broadcast-one"
)


# What a single-key CKKS server gains by recombining the uploads it cannot read.
RECOMBINED_ONLY = (
    "under unauthenticated single-key CKKS the server broadcast node {node}'s own upload as "
    "round {round}'s aggregate and the clients accepted it (nothing binds a broadcast to a "
    "sum); the server holds no key, so what it sent and what came back stay ciphertexts, but "
    "the key holder would release such a recombination as the model (tests/adversarial/"
    "test_deviating_server.py reads one client's update that way): this arm holds against an "
    "honest server only"
)

# Crafted models against model consistency.
CONSISTENCY_REFUSED = (
    "the server sent node {node} a crafted model in round {round} and the other clients "
    "another; with model consistency on, the clients compared the signed digests of what "
    "they were about to receive, and {refused} of them, the target among them, refused to "
    "train: the round kept its model and the server read no update"
)

# A recombination left as the final aggregate, against the key holder's release.
RELEASE_REDIRECT_REFUSED = (
    "under authenticated single-key CKKS the server left node {node}'s own upload as round "
    "{round}'s aggregate, the one the key holder releases; the key holder refused to decrypt "
    "it (it does not verify as the sum of enough authenticated uploads) and released "
    "nothing: the server learned nothing"
)

# The decryption oracle against authenticated threshold CKKS.
DECRYPTION_REFUSED = (
    "under authenticated threshold CKKS the server asked the round-{round} decrypting set "
    "for shares of node {node}'s own upload; every party refused (one share per round, for "
    "a sum of enough signed uploads), and the server read no individual update"
)

# The same recombination against authenticated CKKS.
RECOMBINATION_REFUSED = (
    "under authenticated single-key CKKS the server broadcast node {node}'s own upload as "
    "round {round}'s aggregate; {refused} client(s) refused it before decrypting anything (it "
    "does not verify as the sum of enough authenticated uploads of one round), the run went "
    "on from the last verified sum, and the key holder released only a verified sum: the "
    "server learned nothing"
)


def _refused_crafted_models(rundir: RunDirectory, record: AttackRecord) -> str | None:
    """Why the malicious server read nothing, where the target refused its crafted model."""
    rounds = list(rundir.read_history())
    if record.aggregate not in ("models", "drifts") or record.server_round > len(rounds):
        return None
    failed = rounds[record.server_round - 1].failed
    reason = failed.get(str(record.target_node), "")
    if "model consistency" not in reason:
        return None
    return CONSISTENCY_REFUSED.format(
        node=record.target_node, round=record.server_round, refused=len(failed)
    )


class MaliciousServerView(SightView):
    """A server that crafted the models of one round (the run's ``adversary`` key).

    It holds the aggregate its scheme lets it read and the models it sent; from them it
    reads back the target's update (:func:`fedpriv.adversaries.record.isolate`).
    """

    threat = Threat.MALICIOUS_SERVER
    possible = frozenset({Capability.ISOLATED_UPDATE})

    def missing(self, capability: Capability) -> str | None:
        """The isolated update exists where the server attacked and reads the aggregate."""
        if capability != Capability.ISOLATED_UPDATE:
            # Not the curious server's reading of the same run: that is its own threat.
            return View.missing(self, capability)
        plan = self.config.adversary_plan
        scheme = SCHEMES.entry(self.config.aggregation)
        if plan.attack is not None:
            refusal = adversary_refusal(plan.attack, self.config.aggregation, self.config.model)
            if refusal is not None:
                return refusal
        if plan.honest:
            if Trait.PLAINTEXT_BROADCAST not in scheme.provides:
                return CIPHERTEXT_ONLY
            if self.config.dataset.startswith(APP_DATA_PREFIX):
                return (
                    "the run's server was honest: a run recorded from a Flower app holds no "
                    "crafted model (fedpriv's malicious server runs in `fedpriv run`)"
                )
            return (
                "the run's server was honest: rerun it with "
                f"--adversary malicious-server:<{'|'.join(a for a in ServerAttack)}>"
            )
        attack = read_attack(self.rundir)
        if attack is None:
            return (
                f"the malicious server never acted: partition {plan.target} was not sampled "
                f"(or not yet seen) from round {plan.round} on"
            )
        record = attack[0]
        refused = _refused_crafted_models(self.rundir, record)
        if refused is not None:
            return refused
        if record.aggregate == Outcome.REFUSED:
            return DECRYPTION_REFUSED.format(node=record.target_node, round=record.server_round)
        if record.aggregate == Outcome.RECOMBINED:
            rounds = list(self.rundir.read_history())
            after = rounds[record.server_round] if record.server_round < len(rounds) else None
            if self.config.ckks_authenticated:
                if (self.rundir.path / RELEASE_REFUSED).is_file():
                    return RELEASE_REDIRECT_REFUSED.format(
                        node=record.target_node, round=record.server_round
                    )
                count = len(after.aggregate_rejected_by) if after is not None else 0
                return RECOMBINATION_REFUSED.format(
                    node=record.target_node, round=record.server_round, refused=count
                )
            return RECOMBINED_ONLY.format(node=record.target_node, round=record.server_round)
        if record.decrypted:
            return None
        hidden = self.sight.models_hidden()
        if hidden is not None:
            return hidden
        if record.server_round not in self.rounds:
            return f"round {record.server_round}, the attacked one, left no aggregate"
        return None

    def isolated(self) -> tuple[AttackRecord, Isolated]:
        """What the server did, and the target's update it reads back."""
        self.require(frozenset({Capability.ISOLATED_UPDATE}))
        attack = read_attack(self.rundir)
        assert attack is not None
        record, sent = attack
        assert sent is not None
        if record.decrypted:
            return record, isolate(record, sent, None)
        checkpoint = self.rundir.read_checkpoint(record.server_round)
        aggregate = record_to_state(arrays_of(checkpoint))
        return record, isolate(record, sent, aggregate)


class OutsiderView(View):
    """Query access to the released model, plus records from the same population.

    Parameters
    ----------
    run_dir : str | Path
        The run whose ``model.pt`` is queried.
    output : str
        ``probabilities`` (full confidence vectors) or ``labels`` (predicted label only).

    """

    threat = Threat.OUTSIDER
    possible = frozenset(
        {Capability.QUERY_PROBABILITIES, Capability.QUERY_LABELS, Capability.POPULATION_DATA}
    )

    def __init__(
        self, run_dir: str | Path, output: str = "probabilities", config: RunConfig | None = None
    ) -> None:
        super().__init__(run_dir, config)
        if output not in OUTPUTS:
            raise ConfigError(f"outsider output must be one of {', '.join(OUTPUTS)}, got {output}")
        self.output = output
        self.queries = 0
        self._released: ReleasedModel | None = None

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        *,
        output: str = "probabilities",
        colluders: int = 1,
        key_dir: str | Path | None = None,
        config: RunConfig | None = None,
    ) -> View:
        """The outsider receiving ``output``."""
        return cls(run_dir, output, config)

    def missing(self, capability: Capability) -> str | None:
        """Queries need a released model; label-only access withholds the scores."""
        if capability in (Capability.QUERY_PROBABILITIES, Capability.QUERY_LABELS):
            if not self.rundir.has_model():
                return "no released model (model.pt) to query"
        if capability == Capability.QUERY_PROBABILITIES and self.output == "labels":
            return "label-only access: the attack needs confidence scores"
        return super().missing(capability)

    @property
    def released(self) -> ReleasedModel:
        """The released model, as the run's defense serves it."""
        if self._released is None:
            model = new_model(self.config)
            load_state(model, state_from_bytes(self.rundir.model_path.read_bytes()))
            model.to(torch_device(self.config.device))
            self._released = load_scheme(self.config).defense.released(model)
        return self._released

    @property
    def distortion(self) -> list[float]:
        """L1 distortion of every answer so far (0 without a defense in front)."""
        return self.released.distortion

    def query(self, x: np.ndarray) -> np.ndarray:
        """Answer queries: probability vectors, or predicted labels in label-only mode."""
        self.queries += len(x)
        probabilities = self.released.answer(x)
        return probabilities if self.output == "probabilities" else probabilities.argmax(1)

    def white_box(self) -> torch.nn.Module:
        """The model itself; outsiders get this only when an attack is white-box."""
        return self.released.model

"""The interface of a defense composed with an aggregation scheme, and the empty defense."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from flwr.serverapp.strategy import Strategy
from torch import nn

from fedpriv.config import RunConfig
from fedpriv.registry import DEFENSES
from fedpriv.registry import Defense as DefenseName
from fedpriv.rundir import RunDirectory
from fedpriv.training import LocalUpdate, Trainer, model_logits, sgd_trainer

# An arm's headline numbers by name (``fedpriv.compare.results.Headline``), for sentences.
Numbers = Mapping[str, float | str | None]


class ReleasedModel:
    """How the released model answers an outsider's queries: its probability vectors."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        # L1 distance between each answer and the model's own probabilities (0: undefended).
        self.distortion: list[float] = []

    def describe(self) -> dict[str, float | str] | None:
        """The defense in front of the model, as result files record it (``None``: none)."""
        return None

    def answer(self, x: np.ndarray) -> np.ndarray:
        """Probability vectors for the queries ``x``."""
        with torch.no_grad():
            probabilities = torch.softmax(model_logits(self.model, x), dim=1).numpy()
        self.distortion.extend([0.0] * len(probabilities))
        return probabilities


class Defense:
    """A protection beside the aggregation scheme; each hook does nothing unless overridden.

    Parameters
    ----------
    config : RunConfig
        The run the defense protects.

    """

    name: ClassVar[str] = DefenseName.NONE
    # Whether the defense protects anything (the empty defense does not).
    protects: ClassVar[bool] = True

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    def wrap_strategy(self, strategy: Strategy) -> Strategy:
        """The server's strategy with this defense around it."""
        return strategy

    def trainer(self) -> Trainer:
        """How a client trains locally."""
        return sgd_trainer

    def client_update(self, update: LocalUpdate) -> LocalUpdate:
        """What a client sends instead of its plain update."""
        return update

    def noise_contributors(self, sampled: int) -> int | None:
        """Clients whose noise shares make up an authenticated sum's noise (``None``: none).

        ``sampled``: the clients a round samples. A key holder then accepts no sum of fewer.
        """
        return None

    def noise_share(
        self, size: int, contributors: int, server_round: int, sender: int
    ) -> np.ndarray | None:
        """A client's share of the sum's noise for ``size`` slots (``None``: it adds none)."""
        return None

    def max_total_weight(self, records: int) -> float:
        """The largest sum of update weights in a round (``records``: training records)."""
        return float(records)

    def aggregate_headroom(self) -> float:
        """How far the server may move a sum of updates before release (its noise)."""
        return 0.0

    def after_run(self, rundir: RunDirectory) -> None:
        """Work once the run finished (privacy accounting a client cannot do alone)."""

    def released(self, model: nn.Module) -> ReleasedModel:
        """The released model as an outsider reaches it."""
        return ReleasedModel(model)

    def narrative(self, arm: Numbers, baseline: Numbers, baseline_name: str) -> list[str]:
        """Sentences, from an arm's numbers, on what this defense changed."""
        return []

    @property
    def guards_queries(self) -> bool:
        """Whether the defense stands between the released model and its queries only.

        Such a defense leaves the model as it is: a comparison then also attacks the same
        model without it, and reports the difference paired, seed by seed.
        """
        return type(self).released is not Defense.released

    def effects(self) -> tuple[Effect, ...]:
        """Headline numbers the report tests against the baseline's, across seeds.

        Each becomes a sentence that calls the difference an effect only where the seeds'
        95% intervals separate (``fedpriv.report.narrative.effect``).
        """
        return ()


@dataclass(frozen=True)
class Effect:
    """A headline number a defense is expected to move (or to leave alone).

    Attributes
    ----------
    key : str
        The :class:`~fedpriv.report.results.Headline` field.
    what : str
        What it measures, as a sentence names it.
    attack_key : str | None
        The field naming the attack it comes from, where it is a maximum over attacks.
    paired : bool
        ``key`` is already a difference measured on the same model with and without the
        defense (seed by seed): it is an effect where its interval excludes zero.
        Otherwise it is compared with the baseline arm's value.

    """

    key: str
    what: str
    attack_key: str | None = None
    paired: bool = False


class NoDefense(Defense):
    """No protection beyond the aggregation scheme."""

    protects = False


def load_defense(config: RunConfig) -> Defense:
    """The defense a run asks for (``defense`` run-config key)."""
    defense: Defense = DEFENSES.load(config.defense)(config)
    return defense

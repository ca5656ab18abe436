"""Isolation with a binning imprint: the target's records read back exactly from its update.

Fowl et al., "Robbing the Fed" (ICLR 2022, Section 3): the target's first linear layer
becomes units that measure the input's mean brightness against increasing thresholds
(:func:`fedpriv.adversaries.crafting.imprint_model`), placed at equal quantiles of the public
dataset's brightness (the server's prior); the other clients get the dead model, as in
:mod:`fedpriv.adversaries.isolation`.
"""

from __future__ import annotations

from fedpriv.adversaries.crafting import brightness_thresholds, imprint_model, linear_layers
from fedpriv.adversaries.isolation import Isolation
from fedpriv.data.datasets import load_dataset
from fedpriv.parameters import State


class Imprint(Isolation):
    """Isolation, the target's first layer replaced by a binning imprint on brightness."""

    def craft(self, state: State) -> tuple[State, State]:
        """The imprint model for the target, the dead model for everyone else."""
        _, others = super().craft(state)
        (w1, _), *_ = linear_layers(state)
        dataset = load_dataset(self.config.dataset)
        # The imprint layer sees the model's input: the images as the model normalizes them.
        x = (
            dataset.x
            if dataset.normalization is None
            else dataset.normalization.normalize(dataset.x)
        )
        brightness = x.reshape(len(x), -1).mean(axis=1)
        target = imprint_model(state, brightness_thresholds(brightness, len(state[w1]) - 1))
        return target, others

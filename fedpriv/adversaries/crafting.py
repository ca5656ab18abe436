"""The models a malicious server crafts, and how it reads records back from their updates.

Model inconsistency (Pasquini et al., "Eluding Secure Aggregation in Federated Learning via
Model Inconsistency", CCS 2022): the server sends the target a working model and every other
client a model in which every hidden unit of the MLP is dead (pre-activation below zero for
every input in [0, 1]), so their training moves nothing but the output bias; the aggregate
then is the target's update on every other coordinate. The binning imprint (Fowl et al.,
"Robbing the Fed", ICLR 2022, Section 3) replaces the target's first linear layer by units
that all measure one quantity of the input (its mean brightness) against increasing
thresholds, so that the difference of two neighbouring units' weight updates, divided by
that of their biases, is the record that fell between the thresholds, exactly.

A meter makes the target's share of the aggregate readable: hidden unit 0 is dead for every
client (so nobody's training moves its weights), and the other clients' copy of one of its
weights is offset by :data:`METER`. A weighted average of models then holds that weight at
``w + (1 - rho) METER`` where ``rho`` is the target's share of the total weight.
"""

from __future__ import annotations

import numpy as np

from fedpriv.parameters import State

# Offset of the meter weight in the non-targets' models.
METER = 1.0
# How far below zero a dead unit's pre-activation stays, for every input in [0, 1].
MARGIN = 0.5
# Gain of the imprint units' outgoing column (Fowl et al. scale the imprint layer alike).
IMPRINT_GAIN = 40.0
# The hidden unit that is dead for every client and carries the meter.
METER_UNIT = 0


def linear_layers(state: State) -> list[tuple[str, str]]:
    """The (weight, bias) names of the MLP's linear layers, input first."""
    names = list(state)
    layers = [
        (w, b)
        for w, b in zip(names, names[1:], strict=False)
        if w.endswith("weight") and b.endswith("bias") and state[w].ndim == 2
    ]
    if len(layers) < 3:
        raise ValueError("the crafted models need an MLP with two hidden layers")
    return layers


def dead_bias(weight: np.ndarray) -> np.ndarray:
    """Biases that keep every unit of ``weight`` below zero for every input in [0, 1]."""
    bias: np.ndarray = -(np.maximum(weight, 0.0).sum(axis=1) + MARGIN)
    return bias.astype(weight.dtype)


def isolation_models(state: State) -> tuple[State, State]:
    """The target's model (``state`` with the meter unit dead) and everyone else's."""
    (w1, b1), (_, b2), _ = linear_layers(state)[:3]
    target = {k: v.copy() for k, v in state.items()}
    target[b1][METER_UNIT] = dead_bias(target[w1])[METER_UNIT]
    others = {k: v.copy() for k, v in target.items()}
    others[b1] = dead_bias(others[w1])
    others[b2] = np.full_like(others[b2], -MARGIN)
    others[w1][METER_UNIT, 0] += METER
    return target, others


def brightness_thresholds(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` increasing thresholds at equal quantiles of a measurement's distribution."""
    thresholds: np.ndarray = np.quantile(values, np.arange(bins) / bins)
    return thresholds.astype(np.float32)


def imprint_model(state: State, thresholds: np.ndarray) -> State:
    """``state`` with its first layer a binning imprint on mean brightness (Fowl et al.).

    Hidden unit ``i >= 1`` computes ``mean(x) - thresholds[i - 1]``; every imprint unit feeds
    the next layer through the same column, so that all active units receive the same
    error signal and their updates differ only by the records that activate them.
    """
    (w1, b1), (w2, _), _ = linear_layers(state)[:3]
    model, _ = isolation_models(state)
    units, width = model[w1].shape
    if len(thresholds) != units - 1:
        raise ValueError(f"{units - 1} thresholds needed, got {len(thresholds)}")
    model[w1][1:] = 1.0 / width
    model[b1][1:] = -thresholds
    # One of the layer's own columns, amplified: the error signal each bin receives, and with
    # it the update the server reads back through the aggregate's rounding, scales with it.
    model[w2][:, 1:] = IMPRINT_GAIN * model[w2][:, 1:2]
    return model


def read_imprint(update_weight: np.ndarray, update_bias: np.ndarray) -> np.ndarray:
    """The records an imprint layer's update holds: one per bin that a record fell in.

    ``update_weight`` / ``update_bias`` are the first layer's update (any common scale).
    Records between thresholds ``i`` and ``i + 1`` activate units ``1..i``: the difference
    of units ``i`` and ``i + 1`` is their sum, weighted by one error signal, over the same
    sum of the biases. A bin holding one record gives it back exactly; several give their
    weighted mean.
    """
    weight = np.asarray(update_weight[1:], np.float64)
    bias = np.asarray(update_bias[1:], np.float64)
    dw = weight - np.vstack([weight[1:], np.zeros_like(weight[:1])])
    db = bias - np.append(bias[1:], 0.0)
    scale = np.abs(db).max() if len(db) else 0.0
    used = np.abs(db) > 1e-6 * scale if scale > 0 else np.zeros(len(db), bool)
    records: np.ndarray = dw[used] / db[used, None]
    return records.astype(np.float32)

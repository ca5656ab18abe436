"""A model's parameters as named numpy arrays and as one flat vector (no torch needed)."""

from __future__ import annotations

import numpy as np

State = dict[str, np.ndarray]


def state_to_vector(state: State) -> np.ndarray:
    """Flatten a state dict (in its key order) into one float64 vector."""
    if not state:
        return np.zeros(0)
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in state.values()])


def vector_to_state(vector: np.ndarray, template: State) -> State:
    """Cut a flat vector back into arrays shaped and typed like ``template``.

    Values bound for integer arrays (BatchNorm's ``num_batches_tracked`` counter) are
    rounded to the nearest integer first: an average such as 4.9999999 becomes 5, not the 4
    that a plain cast would truncate it to.

    Raises
    ------
    ValueError
        If the vector does not have exactly as many values as the template.

    """
    total = sum(int(np.prod(v.shape)) for v in template.values())
    if vector.size != total:
        raise ValueError(f"vector has {vector.size} values, the model has {total}")
    out: State = {}
    offset = 0
    for key, ref in template.items():
        size = int(np.prod(ref.shape))
        values = vector[offset : offset + size]
        if np.issubdtype(ref.dtype, np.integer):
            values = np.rint(values)
        out[key] = values.reshape(ref.shape).astype(ref.dtype)
        offset += size
    return out


def num_values(state: State) -> int:
    """Number of scalar values in a state dict."""
    return sum(int(v.size) for v in state.values())

"""Release by the key holders: decrypt the final model and the encrypted metrics of a ckks run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.crypto.keys import load_client_context
from fedpriv.crypto.packing import decrypt_vector, decrypt_weighted_mean
from fedpriv.crypto.presets import get_preset
from fedpriv.errors import FedprivError
from fedpriv.models import state_to_vector, vector_to_state
from fedpriv.rundir import RunDirectory
from fedpriv.task import initial_state
from fedpriv.wire import record_to_state


def release(run_dir: str | Path, key_dir: str | Path | None = None) -> Path:
    """Decrypt a ckks run's final global model into ``model.pt`` and fill in its metrics.

    Each round's encrypted evaluation sum becomes ``accuracy`` and ``loss`` in
    ``history.json``. Needs the clients' secret-key context: only key holders can release.

    Returns
    -------
    Path
        The written ``model.pt``.

    """
    rundir = RunDirectory(run_dir)
    config = RunConfig.from_flower(rundir.read_config())
    if config.aggregation != "ckks":
        raise FedprivError(f"{rundir.path} is a {config.aggregation} run; nothing to release")
    context = load_client_context(key_dir or config.key_dir)
    preset = get_preset(config.ckks_preset)
    rounds = rundir.checkpoint_rounds()
    if not rounds:
        raise FedprivError(f"{rundir.path} has no checkpoint to release")
    history = rundir.read_history()
    for entry in history["rounds"]:
        state = rundir.read_checkpoint(entry["round"])
        if "evaluation" in state.array_records:
            loss_sum, correct, count = decrypt_vector(state["evaluation"], context, preset)
            if round(count) > 0:
                entry["accuracy"] = float(correct / count)
                entry["loss"] = float(loss_sum / count)
    rundir.write_history(history)
    final = rundir.read_checkpoint(rounds[-1])["arrays"]
    if len(final) == 0:  # no round changed the model: it is still the seed's
        rundir.write_model(initial_state(config))
        return rundir.path / "model.pt"
    mean, _ = decrypt_weighted_mean(final, context, preset)
    rundir.write_model(vector_to_state(mean, initial_state(config)))
    return rundir.path / "model.pt"


def round_models(run_dir: str | Path, key_dir: str | Path | None = None) -> list[np.ndarray]:
    """Each round's global model as a flat vector (decrypted with the clients' key under ckks).

    Only a key holder can call this on a ckks run; it is how tests and benchmarks compare
    the arms round by round.
    """
    rundir = RunDirectory(run_dir)
    config = RunConfig.from_flower(rundir.read_config())
    rounds = rundir.checkpoint_rounds()
    if config.aggregation == "plaintext":
        return [
            state_to_vector(record_to_state(rundir.read_checkpoint(r)["arrays"])) for r in rounds
        ]
    context = load_client_context(key_dir or config.key_dir)
    preset = get_preset(config.ckks_preset)
    return [
        decrypt_weighted_mean(rundir.read_checkpoint(r)["arrays"], context, preset)[0]
        for r in rounds
    ]

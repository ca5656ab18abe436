"""Resuming a run from its run directory: the last round whose checkpoint and history agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flwr.app import ArrayRecord

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.rundir import RunDirectory

# Keys a resumed run may change: where it runs, and that it resumes.
RESUMABLE_CHANGES = ("resume", "out_dir", "key_dir")


@dataclass(frozen=True)
class ResumePoint:
    """Where a run continues.

    Attributes
    ----------
    last_round : int
        The last round that finished (0: none; the run starts over).
    history : dict[str, Any]
        The history up to and including ``last_round``.
    arrays : ArrayRecord | None
        The global model after ``last_round`` (ciphertexts under ckks); ``None`` if none.

    """

    last_round: int
    history: dict[str, Any]
    arrays: ArrayRecord | None


def resume_point(rundir: RunDirectory, config: RunConfig) -> ResumePoint:
    """Read the state a run directory holds and check that ``config`` continues it.

    A round counts as finished when both its checkpoint and its history entry were written
    (each atomically; the checkpoint first): a run killed between the two redoes that round.

    Raises
    ------
    ConfigError
        If the directory holds another federation (a run-config key differs).

    """
    stored = RunConfig.from_flower(rundir.read_config())
    changed = config.differences(stored, ignore=RESUMABLE_CHANGES)
    if changed:
        raise ConfigError(
            f"cannot resume {rundir.path}: {', '.join(changed)} differ(s) from the run it holds"
        )
    try:
        history = rundir.read_history()
    except FileNotFoundError:
        history = {"aggregation": config.aggregation, "rounds": []}
    checkpoints = set(rundir.checkpoint_rounds())
    finished = 0
    for entry in history["rounds"]:
        if entry["round"] != finished + 1 or entry["round"] not in checkpoints:
            break
        finished = entry["round"]
    history = {**history, "rounds": history["rounds"][:finished]}
    arrays = rundir.read_checkpoint(finished)["arrays"] if finished else None
    return ResumePoint(finished, history, arrays)

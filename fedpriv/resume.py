"""Resuming a run from its run directory: the last round whose checkpoint and history agree."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ArrayRecord

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.history import History
from fedpriv.rundir import RunDirectory
from fedpriv.wire import arrays_of


@dataclass(frozen=True)
class ResumePoint:
    """Where a run continues.

    Attributes
    ----------
    last_round : int
        The last round that finished (0: none; the run starts over).
    history : History
        The history up to and including ``last_round``.
    arrays : ArrayRecord | None
        The global model after ``last_round`` (ciphertexts under ckks); ``None`` if none.

    """

    last_round: int
    history: History
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
    stored = rundir.read_config()
    # More rounds extend the run (``fedpriv run --resume DIR --rounds N``); nothing else may
    # change the federation.
    changed = config.differences(stored, ignore=(*RunConfig.RESUMABLE_CHANGES, "num_server_rounds"))
    if changed:
        raise ConfigError(
            f"cannot resume {rundir.path}: {', '.join(changed)} differ(s) from the run it holds"
        )
    history = rundir.read_history() if rundir.has_history() else History(config.aggregation)
    checkpoints = set(rundir.checkpoint_rounds())
    finished = 0
    for record in history:
        if record.round != finished + 1 or record.round not in checkpoints:
            break
        finished = record.round
    if finished > config.num_server_rounds:
        raise ConfigError(
            f"cannot resume {rundir.path} for {config.num_server_rounds} rounds: it has "
            f"finished {finished}"
        )
    arrays = arrays_of(rundir.read_checkpoint(finished)) if finished else None
    return ResumePoint(finished, history.upto(finished), arrays)

"""The ServerApp's work: start or resume a run directory, then let the scheme serve its rounds."""

from __future__ import annotations

import random
import time
from logging import INFO
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.federation.rounds import wait_for_nodes
from fedpriv.flower_internals import log
from fedpriv.history import History
from fedpriv.resume import resume_point
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme

# How long the server waits for `num-clients` nodes before round 1.
NODE_WAIT_SECONDS = 120.0


def resolve_out_dir(config: RunConfig) -> Path:
    """The run directory: ``out-dir``, or ``runs/<aggregation>-<time>`` under the cwd."""
    if config.out_dir:
        return Path(config.out_dir).expanduser().resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (Path.cwd() / "runs" / f"{config.aggregation}-{stamp}").resolve()


def serve(grid: Grid, context: Context) -> Path:
    """Run the federation described by the run config and write its run directory.

    With ``resume=true`` and an ``out-dir`` that holds this run, continue after its last
    finished round (from that round's checkpoint) instead of starting over.
    """
    config = RunConfig.from_flower(dict(context.run_config))
    rundir = RunDirectory(resolve_out_dir(config))
    scheme = load_scheme(config)
    scheme.check_server()  # refuse bad keys before anything is written
    history = History(config.aggregation)
    resume_from = None
    if config.resume and rundir.holds_run():
        point = resume_point(rundir, config)
        if point.last_round and not scheme.resumable:
            raise ConfigError(f"{config.aggregation} runs cannot be resumed")
        history, resume_from = point.history, point.arrays
        log(INFO, "resuming %s after round %d", rundir.path, point.last_round)
        if config.num_server_rounds != rundir.read_config().num_server_rounds:
            # Extended: the run directory describes the run it now holds.
            rundir.write_config(
                rundir.read_config().replace(num_server_rounds=config.num_server_rounds)
            )
    else:
        rundir.create()
        rundir.write_config(config.replace(resume=False))
    # FedAvg samples clients with `random`; seed it so runs repeat (the round loop reseeds it
    # every round, so a resumed run samples as an uninterrupted one).
    random.seed(config.seed)
    wait_for_nodes(grid, config.num_clients, timeout=NODE_WAIT_SECONDS)
    scheme.serve(grid, context, rundir, history, resume_from)
    log(INFO, "run directory: %s", rundir.path)
    return rundir.path

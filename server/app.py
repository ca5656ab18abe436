"""ServerApp: build the strategy the run configuration asks for and run the federation."""

from __future__ import annotations

import random
import time
from logging import INFO
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fedpriv.config import RunConfig
from fedpriv.crypto.keys import check_preset, load_server_context
from fedpriv.crypto.presets import get_preset
from fedpriv.errors import ConfigError
from fedpriv.resume import resume_point
from fedpriv.rundir import RunDirectory
from fedpriv.task import initial_state, num_parameters
from fedpriv.wire import record_to_state, state_to_record
from server.rounds import RoundPolicy, run_rounds, wait_for_nodes
from server.secagg import run_secagg
from strategies import CkksFedAvg, PlaintextFedAvg

app = ServerApp()
# How long the server waits for `num-clients` nodes before round 1.
NODE_WAIT_SECONDS = 120.0


def resolve_out_dir(config: RunConfig) -> Path:
    """The run directory: ``out-dir``, or ``runs/<aggregation>-<time>`` under the cwd."""
    if config.out_dir:
        return Path(config.out_dir).expanduser().resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (Path.cwd() / "runs" / f"{config.aggregation}-{stamp}").resolve()


def build_strategy(config: RunConfig) -> tuple[Strategy, ArrayRecord]:
    """Return the strategy and the initial global arrays the server starts from."""
    sampling: dict[str, Any] = {
        "fraction_train": config.fraction_train,
        "fraction_evaluate": config.fraction_evaluate,
        "min_train_nodes": min(config.min_available_clients, config.num_clients),
        "min_evaluate_nodes": min(config.min_available_clients, config.num_clients),
        "min_available_nodes": min(config.min_available_clients, config.num_clients),
    }
    if config.aggregation == "ckks":
        if not config.key_dir:
            raise ConfigError("aggregation 'ckks' needs key-dir (see `fedpriv keys new`)")
        check_preset(config.key_dir, config.ckks_preset)
        context = load_server_context(config.key_dir)
        dp = config.dp_settings() if config.defense == "dp" else None
        strategy = CkksFedAvg(
            context, get_preset(config.ckks_preset), num_parameters(config), dp=dp, **sampling
        )
        # The server never holds a plaintext model: clients build round 1's from the seed.
        return strategy, ArrayRecord()
    return PlaintextFedAvg(**sampling), state_to_record(initial_state(config))


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run config and write its run directory.

    With ``resume=true`` and an ``out-dir`` that holds this run, continue after its last
    finished round (from that round's checkpoint) instead of starting over.
    """
    config = RunConfig.from_flower(dict(context.run_config))
    rundir = RunDirectory(resolve_out_dir(config))
    strategy, arrays = build_strategy(config)
    history: dict[str, Any] = {"aggregation": config.aggregation, "rounds": []}
    first_round = 1
    if config.resume and rundir.holds_run():
        point = resume_point(rundir, config)
        history, first_round = point.history, point.last_round + 1
        if point.arrays is not None:
            arrays = point.arrays
        log(INFO, "resuming %s after round %d", rundir.path, point.last_round)
    else:
        rundir.create()
        rundir.write_config(config.replace(resume=False).to_dict())
    if config.aggregation == "secagg" and first_round > 1:
        raise ConfigError("secagg runs cannot be resumed (Flower's workflow keeps no state)")
    # FedAvg samples clients with `random`; seed it so runs repeat (run_rounds reseeds it
    # every round, so a resumed run samples as an uninterrupted one).
    random.seed(config.seed)
    strategy.summary()
    wait_for_nodes(grid, config.num_clients, timeout=NODE_WAIT_SECONDS)
    if config.aggregation == "secagg":
        rundir.write_model(run_secagg(grid, context, config, rundir, history))
        log(INFO, "run directory: %s", rundir.path)
        return
    if isinstance(strategy, CkksFedAvg):
        strategy.accepted = arrays  # what the clients last accepted: the resumed global model
    policy = RoundPolicy(
        min_clients=min(config.min_available_clients, config.num_clients),
        sampling_seed=config.seed,
    )
    final = run_rounds(
        grid,
        strategy,
        rundir,
        arrays,
        config.num_server_rounds,
        history,
        record_view=config.record_server_view,
        policy=policy,
        first_round=first_round,
    )
    if config.aggregation == "plaintext":
        rundir.write_model(record_to_state(final))
    log(INFO, "run directory: %s", rundir.path)

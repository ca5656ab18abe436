"""pytorch-app: the ServerApp."""

from pathlib import Path

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedpriv.flower import record_run
from pytorch_app.task import Net, load_data, save_arrays

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg from a seeded initial model; keep every round's global arrays."""
    torch.manual_seed(0)
    arrays = ArrayRecord(Net().state_dict())
    out = Path(str(context.run_config["out-dir"]) or "outputs")

    def keep(server_round: int, arrays: ArrayRecord) -> None:
        save_arrays(arrays, out / f"round-{server_round}.pkl")

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0)
    # What the server sees, for `fedpriv attack`, where the run config sets fedpriv-record-dir.
    grid = record_run(grid, context.run_config, model=Net, data=load_data)
    result = strategy.start(
        grid=grid,
        initial_arrays=arrays,
        num_rounds=int(context.run_config["num-server-rounds"]),
        evaluate_fn=keep,
    )
    save_arrays(result.arrays, out / "final.pkl")

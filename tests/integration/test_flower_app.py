"""A stock Flower Message-API app, encrypted by ``ckks_mod`` and ``EncryptedFedAvg``.

The app below is written as ``flwr new`` writes one (a ClientApp with train and evaluate
handlers, a ServerApp that runs ``FedAvg(...).start(...)``); its encrypted twin differs by
the mod and the strategy. Both run under Flower's own ``Strategy.start()`` on the Simulation
Engine.
"""

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn

from fedpriv.crypto.authenticated import AuthPolicy
from fedpriv.flower import (
    CkksSettings,
    EncryptedFedAvg,
    Layout,
    is_encrypted,
    make_ckks_mod,
    release_arrays,
)

NODES, ROUNDS = 3, 3
# Tight bounds (a round holds 150 examples, every parameter lies below 2): the tighter, the
# more precise the sum.
SETTINGS = CkksSettings(update_bound=2.0, max_round_examples=200)
# What the ServerApps saw, per run (the ServerApp runs in this process, its clients in Ray).
SEEN: dict[str, dict] = {}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def _data(partition: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(partition)
    y = rng.integers(0, 3, 40 + 10 * partition)
    x = rng.normal(0, 0.3, (len(y), 8)) + np.eye(3, 8)[y]
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def _initial() -> ArrayRecord:
    torch.manual_seed(0)
    return ArrayRecord(Net().state_dict())


def _client_app(mods: list) -> ClientApp:
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        model = Net()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x, y = _data(partition)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        metrics = MetricRecord({"train_loss": float(loss), "num-examples": len(y)})
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        model = Net()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x, y = _data(int(context.node_config["partition-id"]))
        accuracy = float((model(x).argmax(1) == y).float().mean())
        metrics = MetricRecord({"accuracy": accuracy, "num-examples": len(y)})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _recording(base: type, name: str) -> type:
    """``base`` that keeps every round's aggregate and the replies it was built from."""

    class Recording(base):  # type: ignore[misc, valid-type]
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            SEEN[name].setdefault("aggregates", []).append(arrays)
            SEEN[name].setdefault("replies", []).extend(replies)
            return arrays, metrics

    return Recording


def _server_app(name: str, make_strategy) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        SEEN[name] = {}
        strategy = make_strategy()
        result = strategy.start(grid=grid, initial_arrays=_initial(), num_rounds=ROUNDS)
        SEEN[name]["result"] = result

    return app


def _simulate(server_app: ServerApp, client_app: ClientApp) -> None:
    from flwr.simulation import run_simulation

    from fedpriv.env import ray_init_args
    from fedpriv.simulation import _start_ray, _stop_ray

    init_args = {**ray_init_args(2), "logging_level": "ERROR", "log_to_driver": False}
    _start_ray(init_args)  # workers import this module: they get the driver's sys.path
    try:
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=NODES,
            backend_config={"client_resources": {"num_cpus": 1}, "init_args": init_args},
        )
    finally:
        _stop_ray()


@pytest.mark.slow
def test_the_encrypted_app_matches_its_plaintext_twin_and_the_server_sees_ciphertexts(tmp_path):
    keys = tmp_path / "keys"
    fedavg = {"min_available_nodes": NODES, "min_train_nodes": NODES, "min_evaluate_nodes": NODES}
    _simulate(_server_app("plain", lambda: _recording(FedAvg, "plain")(**fedavg)), _client_app([]))
    encrypted = _recording(EncryptedFedAvg, "ckks")
    policy = AuthPolicy(min_train=2, min_evaluate=2)
    _simulate(
        _server_app("ckks", lambda: encrypted(keys, SETTINGS, provision=policy, **fedavg)),
        _client_app([make_ckks_mod(SETTINGS, key_dir=keys)]),
    )
    plain, ckks = SEEN["plain"], SEEN["ckks"]
    assert len(plain["aggregates"]) == len(ckks["aggregates"]) == ROUNDS
    for server_round, (expected, summed) in enumerate(
        zip(plain["aggregates"], ckks["aggregates"], strict=True), start=1
    ):
        assert is_encrypted(summed) and not is_encrypted(expected)
        mean = release_arrays(summed, keys, _initial(), SETTINGS)  # the key holder's reading
        for key in expected:
            gap = np.abs(mean[key].numpy() - expected[key].numpy()).max()
            assert gap < 1e-6, (server_round, key, gap)
    # What the server received: ciphertexts (and their tags), no parameter, no n_k.
    assert len(ckks["replies"]) == NODES * ROUNDS
    for reply in ckks["replies"]:
        arrays = reply.content.array_records["arrays"]
        assert is_encrypted(arrays) and set(arrays.keys()) == {"ct", "auth"}
        assert "num-examples" not in reply.content.metric_records["metrics"]
    final = release_arrays(ckks["result"], keys, _initial(), SETTINGS)
    assert Layout.of(final) == Layout.of(_initial())

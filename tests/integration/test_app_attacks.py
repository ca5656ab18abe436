"""``fedpriv attack`` on runs recorded from a Flower app (``fedpriv.flower.record_run``).

The example app (``examples/pytorch-plain``) and its encrypted twin run under Flower's own
``Strategy.start()`` on a grid whose clients are the app's own handlers (behind ``ckks_mod``
for the twin), one single-image FedSGD round; the server's view is recorded and attacked
with the app's model and loader named by dotted path, as a user runs it.
"""

from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.serverapp.strategy import FedAvg
from support import FakeGrid

from fedpriv.attacks.results import Status, Threat
from fedpriv.attacks.runner import read_results
from fedpriv.cli import main
from fedpriv.crypto.authenticated import AuthPolicy
from fedpriv.errors import ConfigError
from fedpriv.flower import (
    AppRecipe,
    CkksSettings,
    EncryptedFedAvg,
    is_encrypted,
    make_ckks_mod,
    record_run,
)
from fedpriv.rundir import RunDirectory

NODES = 3
RUN_CONFIG = {"local-epochs": 1, "learning-rate": 0.1, "train-examples": 1}
MODEL, DATA = "pytorch_app.task:Net", "pytorch_app.task:load_data"


def _grid(client_app, mod=None) -> FakeGrid:
    nodes = [101, 102, 103]

    def answer(message: Message) -> Message:
        partition = nodes.index(message.metadata.dst_node_id)
        context = Context(
            run_id=1,
            node_id=message.metadata.dst_node_id,
            node_config={"partition-id": partition, "num-partitions": NODES},
            state=RecordDict(),
            run_config=RUN_CONFIG,
        )
        handler = (
            client_app.train_handler
            if message.metadata.message_type.startswith("train")
            else client_app.evaluate_handler
        )
        return handler(message, context) if mod is None else mod(message, context, handler)

    return FakeGrid(nodes, answer)


def _record(task, grid, strategy, run_dir: Path) -> None:
    torch.manual_seed(0)
    recorded = record_run(
        grid,
        {**RUN_CONFIG, "fedpriv-record-dir": str(run_dir)},
        model=task.Net,
        data=task.load_data,
    )
    strategy.start(grid=recorded, initial_arrays=ArrayRecord(task.Net().state_dict()), num_rounds=1)


@pytest.fixture(scope="module")
def runs(app, tmp_path_factory):
    """One single-image FedSGD round of the plain app and of its encrypted twin, recorded."""
    from flwr.supercore.task_identity import TaskIdentity

    # Messages are built outside a running app (as the task_identity fixture does).
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    client_app, task = app
    root = tmp_path_factory.mktemp("app-runs")
    plain, ckks, keys = root / "plain", root / "ckks", root / "keys"
    _record(task, _grid(client_app), FedAvg(fraction_train=1.0), plain)
    settings = CkksSettings(max_round_examples=2000)
    strategy = EncryptedFedAvg(
        keys, settings, provision=AuthPolicy(min_train=NODES, min_evaluate=NODES)
    )
    _record(task, _grid(client_app, make_ckks_mod(settings, key_dir=keys)), strategy, ckks)
    return plain, ckks


def test_the_recording_is_a_run_directory_of_the_apps_view(runs):
    plain, ckks = runs
    for run, aggregation in ((plain, "plaintext"), (ckks, "ckks")):
        config = RunDirectory(run).read_config()
        assert (config.aggregation, config.model, config.num_clients) == (aggregation, MODEL, 3)
        assert config.dataset == "app:" + DATA and config.learning_rate == 0.1
        view = RunDirectory(run).view_files(1, "train-recv-")
        assert len(view) == NODES
        # The history, as fedpriv's own runs record it (the app reports eval_acc).
        (record,) = RunDirectory(run).read_history().rounds
        assert len(record.clients) == len(record.evaluated_by) == NODES and not record.failed
        assert record.bytes_up > 0 and record.seconds > 0 and 0 <= record.accuracy <= 1
        assert RunDirectory(run).checkpoint_rounds() == [1]  # sent to evaluate after round 1
    # The twin's server holds ciphertexts only; the plain app's, the models.
    for run, encrypted in ((plain, False), (ckks, True)):
        for path in RunDirectory(run).view_files(1, "train-recv-").values():
            assert is_encrypted(RunDirectory.read_payload(path)["arrays"]) is encrypted


@pytest.mark.slow
def test_gradient_inversion_recovers_the_plain_apps_images_and_not_the_encrypted_ones(runs):
    """Acceptance: not applicable on the ckks server view; >= 30 dB on the plaintext twin."""
    plain, ckks = runs
    for run in (plain, ckks):
        argv = ["attack", str(run), "--threat", "curious-server", "--attacks", "ig"]
        assert main([*argv, "--model", MODEL, "--data", DATA]) == 0
    scored = read_results(plain, Threat.CURIOUS_SERVER)["ig"]
    assert scored.status == Status.SCORED and len(scored.clients) == NODES
    assert all(c.psnr >= 30 for c in scored.clients), [c.psnr for c in scored.clients]
    hidden = read_results(ckks, Threat.CURIOUS_SERVER)["ig"]
    assert hidden.status == Status.NOT_APPLICABLE and "ciphertext" in hidden.reason


def test_every_threat_runs_on_an_app_run_and_says_what_does_not_apply(runs):
    plain, ckks = runs
    assert main(["attack", str(plain), "--attacks", "loss,mi-face"]) == 0
    loss = read_results(plain, Threat.OUTSIDER)["loss"]
    assert loss.status == Status.NOT_APPLICABLE and "model.pt" in loss.reason
    assert main(["attack", str(ckks)]) == 0  # every threat, every attack it allows
    coalition = read_results(ckks, Threat.COLLUDING_CLIENT)["ig"]
    assert coalition.status == Status.NOT_APPLICABLE and "not modelled" in coalition.reason


def test_a_wrong_model_or_loader_is_refused_in_one_line(runs, capsys):
    plain, _ = runs
    assert main(["attack", str(plain), "--model", "pytorch_app.task:Nope"]) == 2
    assert "Nope" in capsys.readouterr().err
    assert main(["attack", str(plain), "--data", "no dotted path"]) == 2
    assert "--data 'no dotted path' is not a dotted path" in capsys.readouterr().err


def test_the_recipe_is_checked_and_read_from_the_run_config():
    assert AppRecipe.from_run_config({"lr": 0.5, "local-epochs": 2}) == AppRecipe(0.5, 2)
    with pytest.raises(ConfigError, match="sets no learning rate"):
        AppRecipe.from_run_config({"local-epochs": 2})
    with pytest.raises(ConfigError, match="learning_rate must be > 0.*local_epochs must be"):
        AppRecipe(learning_rate=0.0, local_epochs=0)


def test_without_a_record_dir_the_grid_is_the_apps_own():
    grid = FakeGrid([1], lambda m: None)
    assert record_run(grid, {}, model=MODEL, data=DATA) is grid


def test_model_and_data_name_an_apps_model_and_loader_only(tmp_path, capsys):
    from fedpriv.config import RunConfig

    rundir = RunDirectory(tmp_path / "run")
    rundir.create()
    rundir.write_config(RunConfig())
    assert main(["attack", str(rundir.path), "--model", MODEL]) == 2
    assert "is a fedpriv run (dataset 'digits')" in capsys.readouterr().err

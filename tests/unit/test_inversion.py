"""Gradient inversion: a diverged optimization is recorded as diverged, never scored."""

import json

import numpy as np

from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.gradient_inversion import LocalRecipe, invert
from fedpriv.attacks.inversion import DLG
from fedpriv.attacks.results import Status, Threat
from fedpriv.attacks.runner import run_attack
from fedpriv.attacks.settings import InversionSettings, SuiteSettings
from fedpriv.attacks.views import Capability, SightView
from fedpriv.config import RunConfig
from fedpriv.models import build_model
from fedpriv.parameters import state_to_vector
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.sight import ObservedUpdate
from fedpriv.task import initial_state

CONFIG = RunConfig(num_clients=2, max_train_samples=1, local_epochs=1, batch_size=1)


def _poisoned_update() -> ObservedUpdate:
    before = state_to_vector(initial_state(CONFIG))
    after = before.copy()
    after[:10] = np.nan  # an update no optimization can match
    return ObservedUpdate(1, 7, before, after, num_examples=1, partition_id=0)


class _PlantedView(SightView):
    """The curious server of a plaintext run whose only update is the planted one."""

    def __init__(self, run_dir):
        super().__init__(run_dir)

    @property
    def rounds(self):
        return [1]

    def missing(self, capability):
        return None

    def updates(self, server_round):
        return [_poisoned_update()]


def test_a_diverged_start_is_retried_and_then_reported(tmp_path):
    update = _poisoned_update()
    model = build_model("mlp", (1, 8, 8), 10)
    settings = InversionSettings(method="dlg", iterations=20, restarts=2)
    rec = invert(
        model, update.before, update.after, LocalRecipe(0.05, 0.0, 1, 1, 1), (1, 8, 8), 10, settings
    )
    assert rec.diverged and rec.attempts == 4  # two starts needed, two more tried


def test_a_diverged_attack_has_no_score(tmp_path):
    rundir = RunDirectory(tmp_path / "run")
    rundir.create()
    rundir.write_config(CONFIG)
    suite = SuiteSettings(inversion=InversionSettings(iterations=20, restarts=1))
    context = AttackContext(rundir.path, Threat.CURIOUS_SERVER, suite)
    result = run_attack(DLG(), context, _PlantedView(rundir.path))
    assert result.status == Status.DIVERGED and result.applicable and not result.scored
    assert result.metrics is None and result.headline() is None
    assert "diverged on all 1 updates" in result.reason
    client = result.clients[0]
    assert client.diverged and client.attempts == 2 and client.matching_loss is None
    stored = json.loads(rundir.attack_file("curious-server", "dlg").read_text())
    assert stored["status"] == "diverged" and stored["metrics"] is None
    assert stored["clients"][0]["psnr"] is None  # no score, not a PSNR of noise
    assert Capability.CLIENT_UPDATES in DLG.requirements[0]


def test_simulated_update_of_a_batchnorm_model_reproduces_the_client_update_exactly():
    # The inversion's model of the client: the parameters are trained, BatchNorm's running
    # statistics are carried as buffers. On the true image it must give the observed update.
    import torch

    from fedpriv.attacks.gradient_inversion import simulate_update
    from fedpriv.models import model_state
    from fedpriv.training import train

    rng = np.random.default_rng(0)
    images = rng.random((2, 1, 8, 8), dtype=np.float32)
    labels = np.array([3, 5])
    model = build_model("resnet20", (1, 8, 8), 10, seed=0)
    before = model_state(model)
    train(model, images, labels, 1, 2, 0.1, 0.0, seed=0)
    after = model_state(model)
    trainable = {name for name, _ in model.named_parameters()}
    assert set(before) - trainable, "the model has buffers"
    start = {k: torch.from_numpy(v) for k, v in before.items() if k in trainable}
    buffers = {k: torch.from_numpy(v) for k, v in before.items() if k not in trainable}
    simulated = simulate_update(
        build_model("resnet20", (1, 8, 8), 10).train(),
        start,
        torch.from_numpy(images),
        torch.from_numpy(labels),
        LocalRecipe(0.1, 0.0, 1, 2, 2),
        buffers,
    )
    for name in trainable:
        expected = before[name] - after[name]
        assert np.allclose(simulated[name].detach().numpy(), expected, atol=1e-6), name


def test_inversion_runs_on_a_batchnorm_model():
    from fedpriv.models import model_state
    from fedpriv.training import train

    image = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    model = build_model("resnet20", (1, 8, 8), 10, seed=0)
    before = state_to_vector(model_state(model))
    train(model, image, np.array([3]), 1, 1, 0.1, 0.0, seed=0)
    rec = invert(
        build_model("resnet20", (1, 8, 8), 10),
        before,
        state_to_vector(model_state(model)),
        LocalRecipe(0.1, 0.0, 1, 1, 1),
        (1, 8, 8),
        10,
        InversionSettings(method="ig", iterations=10, restarts=1),
    )
    assert not rec.diverged and rec.labels.tolist() == [3]

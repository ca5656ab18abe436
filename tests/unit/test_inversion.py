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

"""Attacker views: what each threat holds under each scheme, and which attacks that allows."""

import pytest

from fedpriv.attacks.registry import attacks_for
from fedpriv.attacks.runner import check_attacks
from fedpriv.attacks.views import Capability, CoalitionView, OutsiderView, ServerView
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.models import state_to_bytes
from fedpriv.release import release
from fedpriv.rundir import RunDirectory
from fedpriv.task import initial_state

INVERSION = ("ig", "dlg", "idlg")
MEMBERSHIP = (
    "loss",
    "confidence",
    "entropy",
    "label-only",
    "shokri",
    "ml-leaks",
    "lira-offline",
    "lira-online",
    "rmia-offline",
    "rmia-online",
)


def _run(tmp_path, **changes):
    rundir = RunDirectory(tmp_path / "run")
    rundir.create()
    rundir.write_config(RunConfig(**changes))
    return rundir.path


def test_which_attacks_apply_to_which_threat_is_derived():
    assert attacks_for("curious-server") == (*INVERSION, "client-membership", "mi-face")
    assert attacks_for("colluding-client") == (*INVERSION, "client-membership", "mi-face")
    assert attacks_for("outsider") == (*MEMBERSHIP, "client-membership", "mi-face")


def test_attack_names_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="unknown attack 'lira'.*valid choices: ig, dlg"):
        check_attacks("outsider", ["lira"])
    with pytest.raises(ConfigError, match="do not apply to threat outsider"):
        check_attacks("outsider", ["ig"])
    with pytest.raises(ConfigError, match="unknown threat 'server'"):
        check_attacks("server", None)
    assert check_attacks("outsider", ["loss"]) == ("loss",)


@pytest.mark.parametrize(
    ("aggregation", "updates", "models"),
    [
        ("plaintext", "no server view", None),
        ("ckks", "ciphertext only", "ciphertext only"),
        ("secagg", "masked vectors only", None),
    ],
)
def test_the_server_view_of_each_scheme(tmp_path, aggregation, updates, models):
    view = ServerView(_run(tmp_path, aggregation=aggregation))
    assert updates in view.missing(Capability.CLIENT_UPDATES)
    missing_model = view.missing(Capability.WHITE_BOX_MODEL)
    assert (missing_model is None) if models is None else (models in missing_model)
    assert "never holds" in view.missing(Capability.QUERY_PROBABILITIES)


def test_secagg_colluders_below_the_threshold_unmask_nothing(tmp_path):
    run = _run(tmp_path, aggregation="secagg", secagg_reconstruction_threshold=2)
    view = CoalitionView(run, colluders=1)
    assert "needs 2 colluding share holders" in view.missing(Capability.CLIENT_UPDATES)
    at_threshold = CoalitionView(run, colluders=2).missing(Capability.CLIENT_UPDATES)
    assert at_threshold is not None and "does not reconstruct SecAgg+ masks" in at_threshold
    # Not the aggregate instead, which would read as "a coalition of t learns nothing".
    below = CoalitionView(run, colluders=1).missing(Capability.AGGREGATE_UPDATES) or ""
    at = CoalitionView(run, colluders=2).missing(Capability.AGGREGATE_UPDATES) or ""
    assert "masks" not in below and "does not reconstruct SecAgg+ masks" in at
    with pytest.raises(ConfigError, match="at least one client"):
        CoalitionView(run, colluders=0)


def test_the_outsider_needs_a_released_model_and_scores(tmp_path):
    run = _run(tmp_path)
    view = OutsiderView(run)
    assert "no released model" in view.missing(Capability.QUERY_LABELS)
    RunDirectory(run).write_model(state_to_bytes(initial_state(RunConfig())))
    assert view.missing(Capability.QUERY_PROBABILITIES) is None
    labels = OutsiderView(run, output="labels")
    assert "label-only access" in labels.missing(Capability.QUERY_PROBABILITIES)
    assert labels.missing(Capability.POPULATION_DATA) is None
    with pytest.raises(ConfigError, match="outsider output"):
        OutsiderView(run, output="logits")


def test_release_is_for_runs_the_server_cannot_read(tmp_path):
    with pytest.raises(ConfigError, match="plaintext run; nothing to release"):
        release(_run(tmp_path, aggregation="plaintext"))

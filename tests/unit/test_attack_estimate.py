"""Estimates of how long attacks take: counting, shared work, and what the user reads."""

from pathlib import Path

import numpy as np
import pytest

from fedpriv.attacks.estimate import (
    BUSY_FACTOR,
    QUICK_SECONDS,
    Estimate,
    PlanEstimate,
    PlannedAttack,
    duration,
    seconds_per_call,
)
from fedpriv.attacks.gradient_inversion import (
    LBFGS_MAX_EVAL,
    LocalRecipe,
    matching_evaluations,
    matching_seconds,
)
from fedpriv.attacks.settings import InversionSettings
from fedpriv.cli.attack import estimate_lines
from fedpriv.models import build_model
from fedpriv.parameters import state_to_vector


def test_an_estimate_refuses_negative_or_nan_seconds():
    with pytest.raises(ValueError, match="seconds >= 0"):
        Estimate(-1.0, "x")
    with pytest.raises(ValueError, match="seconds >= 0"):
        Estimate(float("nan"), "x")


def test_shared_work_is_counted_once_at_its_first_attack():
    shadows = Estimate(30.0, "16 shadow models", shared="shadow models")
    plan = PlanEstimate.of(
        [
            PlannedAttack("outsider", "loss", Estimate(QUICK_SECONDS, "quick")),
            PlannedAttack("outsider", "shokri", shadows),
            PlannedAttack("outsider", "lira-offline", shadows),
            PlannedAttack("colluding-client", "ig", Estimate(50.0, "steps")),
        ]
    )
    assert plan.seconds("outsider") == QUICK_SECONDS + 30.0 + QUICK_SECONDS
    assert plan.seconds() == plan.seconds("outsider") + 50.0
    assert plan.busy_seconds() == BUSY_FACTOR * plan.seconds()
    assert "shares the shadow models" in plan.attacks[2].estimate.basis
    assert not plan.bound
    assert PlanEstimate.of([PlannedAttack("t", "dlg", Estimate(1.0, "x", bound=True))]).bound


def test_durations_read_as_a_person_writes_them():
    assert duration(0.2) == "1 s" and duration(45) == "45 s" and duration(60) == "1 min"
    assert duration(200) == "3 min 20 s" and duration(3900) == "1 h 5 min"


def test_ig_counts_its_steps_exactly_and_lbfgs_bounds_them():
    assert matching_evaluations(InversionSettings(method="ig", iterations=300)) == (300, False)
    steps, bound = matching_evaluations(InversionSettings(method="dlg", iterations=300))
    assert bound and steps == 300 // 20 * LBFGS_MAX_EVAL


def test_a_matching_step_is_timed_on_the_runs_model():
    model = build_model("mlp", (1, 8, 8), 10)
    before = state_to_vector({k: v.detach().numpy() for k, v in model.state_dict().items()})
    recipe = LocalRecipe(0.1, 0.0, 1, 4, 4)
    for method in ("ig", "dlg", "idlg"):
        settings = InversionSettings(method=method)
        seconds = matching_seconds(model, before, recipe, (1, 8, 8), 10, settings)
        assert 0 < seconds < 1.0


def test_seconds_per_call_is_the_median_after_a_warm_up():
    calls = []
    assert seconds_per_call(lambda: calls.append(1), repeats=3) >= 0
    assert len(calls) == 4


def test_the_printed_estimate_puts_the_quickest_threat_first_and_names_a_first_look():
    plan = PlanEstimate.of(
        [
            PlannedAttack("curious-server", "ig", Estimate(0.0, "not applicable")),
            PlannedAttack("colluding-client", "ig", Estimate(90.0, "5 updates x 2 starts")),
            PlannedAttack("colluding-client", "dlg", Estimate(2.0, "x", bound=True)),
        ]
    )
    lines = estimate_lines(plan, Path("runs/ckks"), ["curious-server", "colluding-client"])
    assert lines[0].startswith("estimated time: at most 1 min 32 s (up to 3 min 4 s")
    assert "curious-server" in lines[1] and "colluding-client" in lines[2]
    assert lines[3] == "    ig: 1 min 30 s (5 updates x 2 starts)"  # dlg (2 s) not itemized
    assert lines[-1] == (
        "a first look alone: fedpriv attack runs/ckks --threat curious-server (about 1 s)"
    )
    quick = PlanEstimate.of([PlannedAttack("outsider", "loss", Estimate(1.0, "quick"))])
    assert not any("first look" in line for line in estimate_lines(quick, Path("r"), ["outsider"]))
    assert np.isclose(quick.seconds(), 1.0)

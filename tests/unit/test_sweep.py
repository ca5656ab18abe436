"""Sweep specifications: parsing, which arms a key tunes, and refusals that name the problem."""

from __future__ import annotations

import pytest
import tomli_w

from fedpriv.compare.plan import distinct_runs, plan, point_runs, point_value
from fedpriv.compare.spec import load_comparison
from fedpriv.compare.sweep import Sweep, parse_value, tunes
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError


def test_values_parse_as_toml_scalars():
    assert [parse_value(v) for v in ("0.5", "4", "true", "dirichlet")] == [
        0.5,
        4,
        True,
        "dirichlet",
    ]
    sweep = Sweep.parse("dp-noise-multiplier=0.5,1,2,4")
    assert sweep.key == "dp-noise-multiplier" and sweep.values == (0.5, 1, 2, 4)


def test_a_knob_tunes_the_arms_that_run_its_defense_or_scheme():
    dp = RunConfig(aggregation="ckks", defense="dp")
    plain = RunConfig()
    assert tunes(dp, "dp-noise-multiplier") and not tunes(plain, "dp-noise-multiplier")
    assert not tunes(dp, "memguard-epsilon")
    assert tunes(RunConfig(aggregation="ckks-threshold", num_clients=5), "threshold")
    assert not tunes(dp, "threshold")
    assert tunes(plain, "local-epochs") and tunes(dp, "num-clients")


def test_bad_sweeps_are_refused_naming_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        Sweep.parse("dp-noise-multiplier")
    with pytest.raises(ConfigError, match="did you mean 'dp-noise-multiplier'"):
        Sweep.parse("dp-noise-multiplyer=1,2")
    with pytest.raises(ConfigError, match="at least two distinct values"):
        Sweep.parse("local-epochs=2,2")
    with pytest.raises(ConfigError, match="no knob"):
        Sweep.parse("seed=1,2")
    experiment = tmp_path / "e.toml"
    experiment.write_text(tomli_w.dumps({"arms": {"plaintext": {"aggregation": "plaintext"}}}))
    with pytest.raises(ConfigError, match="no arm runs what dp-noise-multiplier tunes"):
        load_comparison(experiment, sweep=Sweep.parse("dp-noise-multiplier=1,2"))
    # Every point must be a valid federation: a negative sigma is refused before anything runs.
    experiment.write_text(tomli_w.dumps({"arms": {"dp": {"aggregation": "ckks", "defense": "dp"}}}))
    with pytest.raises(ConfigError, match="dp-noise-multiplier must be >= 0"):
        load_comparison(experiment, sweep=Sweep.parse("dp-noise-multiplier=1,-1"))
    experiment.write_text(
        tomli_w.dumps(
            {
                "arms": {"dp": {"aggregation": "ckks", "defense": "dp"}},
                "sweep": {"key": "dp-noise-multiplier", "values": [1, 2], "arms": ["nope"]},
            }
        )
    )
    with pytest.raises(ConfigError, match=r"\[sweep\] arms \['nope'\]"):
        load_comparison(experiment)


def test_a_sweep_table_expands_into_points_that_reuse_the_arms_own_value(tmp_path):
    experiment = tmp_path / "e.toml"
    experiment.write_text(
        tomli_w.dumps(
            {
                "arms": {
                    "plaintext": {"aggregation": "plaintext"},
                    "dp": {"aggregation": "ckks", "defense": "dp", "dp-noise-multiplier": 2.0},
                },
                "sweep": {"key": "dp-noise-multiplier", "values": [1.0, 2.0, 4.0]},
            }
        )
    )
    comparison = load_comparison(experiment)
    assert comparison.swept_arms() == ("dp",)
    jobs = comparison.sweep_jobs()
    assert [(j.arm, j.value, j.run.name) for j in jobs] == [
        ("dp", 1.0, "dp@dp-noise-multiplier=1.0"),
        ("dp", 2.0, "dp"),
        ("dp", 4.0, "dp@dp-noise-multiplier=4.0"),
    ]
    assert jobs[2].run.config.dp_noise_multiplier == 4.0
    assert jobs[1].run is comparison.arms[1]


def test_the_plan_runs_each_federation_once_with_twins_on_first_seeds_only(tmp_path):
    """Arms x seeds x sweep points: the first seed of each arm carries the twins; a point at
    the arm's own value is the arm's runs (listed under the point, run once)."""
    experiment = tmp_path / "e.toml"
    experiment.write_text(
        tomli_w.dumps(
            {
                "comparison": {"seeds": 2},
                "arms": {
                    "plaintext": {"aggregation": "plaintext"},
                    "dp": {"aggregation": "ckks", "defense": "dp", "dp-noise-multiplier": 2.0},
                },
                "sweep": {"key": "dp-noise-multiplier", "values": [1.0, 2.0]},
            }
        )
    )
    comparison = load_comparison(experiment)
    jobs = plan(comparison)
    assert [(j.arm, j.run.name, j.point, j.twins) for j in jobs] == [
        ("plaintext", "plaintext", "", True),
        ("plaintext", "plaintext.seed-43", "", False),
        ("dp", "dp", "", True),
        ("dp", "dp.seed-43", "", False),
        ("dp", "dp@dp-noise-multiplier=1.0", "dp-noise-multiplier=1.0", False),
        ("dp", "dp@dp-noise-multiplier=1.0.seed-43", "dp-noise-multiplier=1.0", False),
        ("dp", "dp", "dp-noise-multiplier=2.0", False),
        ("dp", "dp.seed-43", "dp-noise-multiplier=2.0", False),
    ]
    runs = [j.run.name for j in distinct_runs(jobs)]
    assert len(runs) == len(set(runs)) == 6
    assert next(j for j in distinct_runs(jobs) if j.run.name == "dp").twins
    point = "dp-noise-multiplier=1.0"
    assert [r.config.seed for r in point_runs(jobs, "dp", point)] == [42, 43]
    assert point_value(comparison, point) == 1.0

"""`fedpriv compare` with seeds, a sweep and MemGuard, on one tiny comparison.

Apart from ``test_compare.py`` so that its comparison and ``--quick``'s run on different
workers (pytest-xdist gives each file to one worker).
"""

import json
import re

import pytest
import tomli_w

from fedpriv.cli import main
from fedpriv.report.rows import ROWS, RUN, read_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny comparison shared by the seeds, sweep and MemGuard tests: plaintext, DP and
    MemGuard arms, 2 seeds (``--seeds`` over the file's 3), a sweep of the DP arm's sigma
    whose second value is the arm's own."""
    folder = tmp_path_factory.mktemp("tiny")
    experiment = folder / "tiny.toml"
    experiment.write_text(
        tomli_w.dumps(
            {
                "run": {"dataset": "digits", "num-clients": 4, "num-server-rounds": 1},
                "comparison": {"seeds": 3},
                "arms": {
                    "plaintext": {"aggregation": "plaintext"},
                    "dp": {"aggregation": "ckks", "defense": "dp", "dp-noise-multiplier": 1.0},
                    "memguard": {"aggregation": "plaintext", "defense": "memguard"},
                },
            }
        )
    )
    out = folder / "out"
    argv = ["compare", str(experiment), "--out", str(out), "--quick", "--seeds", "2"]
    argv += ["--sweep", "dp-noise-multiplier=0.5,1,2"]
    assert main(argv) == 0
    return argv, out


def test_seeds_give_means_and_intervals(tiny):
    _, out = tiny
    arms = {a["name"]: a for a in json.loads((out / "results.json").read_text())["arms"]}
    arm = arms["plaintext"]
    assert arm["seeds"] == [42, 43]  # --seeds overrides [comparison] seeds
    assert {"final_accuracy", "membership_auc"} <= set(arm["spread"])
    runs = {p.name for p in (out / "runs").iterdir()}
    assert {"plaintext", "plaintext.seed-43"} <= runs
    assert (out / "runs" / "plaintext.seed-43" / "attacks" / "outsider").is_dir()
    # The long-format rows hold every seed's numbers; the headline's mean is theirs.
    rows = read_rows(out / ROWS)
    accuracy = [
        r for r in rows if r.arm == "plaintext" and r.metric == "final_accuracy" and r.attack == RUN
    ]
    assert sorted(r.seed for r in accuracy) == [42, 43]
    assert arm["headline"]["final_accuracy"] == pytest.approx(
        sum(r.value for r in accuracy) / 2, abs=1e-12
    )
    assert {r.threat for r in rows} >= {"outsider", "curious-server", RUN}
    report = (out / "report.md").read_text()
    assert "seeds 42, 43 (means with 95% intervals over them)" in report
    assert re.search(r"\| plaintext \| [0-9.]+ ± [0-9.]+ \|", report)


def test_a_sweep_writes_one_point_per_value_and_a_frontier(tiny):
    """`--sweep dp-noise-multiplier=0.5,1,2`: the DP arm at each value (the arm's own value
    reuses its runs), one frontier figure, points in results.json with the epsilon each
    value spends; the other arms are not swept."""
    argv, out = tiny
    results = json.loads((out / "results.json").read_text())
    points = results["sweeps"]
    assert [(p["arm"], p["value"]) for p in points] == [("dp", 0.5), ("dp", 1), ("dp", 2)]
    assert [p["run"] for p in points] == [
        "dp@dp-noise-multiplier=0.5",
        "dp",
        "dp@dp-noise-multiplier=2",
    ]
    assert all(p["seeds"] == [42, 43] for p in points)
    epsilons = [p["headline"]["dp_epsilon"] for p in points]
    assert epsilons[0] > epsilons[1] > epsilons[2] > 0  # more noise, less privacy spent
    assert all(p["headline"]["final_accuracy"] is not None for p in points)
    assert (out / "figures" / "frontier-dp.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "## Privacy-utility frontiers" in report and "dp-noise-multiplier=0.5" in report
    runs = sorted(p.name for p in (out / "runs").iterdir() if p.name.startswith("dp"))
    assert runs == [
        "dp",
        "dp.seed-43",
        "dp@dp-noise-multiplier=0.5",
        "dp@dp-noise-multiplier=0.5.seed-43",
        "dp@dp-noise-multiplier=2",
        "dp@dp-noise-multiplier=2.seed-43",
    ]
    rows = read_rows(out / ROWS)
    assert {r.point for r in rows if r.arm == "dp"} == {
        "",
        "dp-noise-multiplier=0.5",
        "dp-noise-multiplier=1",
        "dp-noise-multiplier=2",
    }
    # The same sweep again reuses every run (nothing is retrained).
    before = {p: (out / "runs" / p / "history.json").stat().st_mtime_ns for p in runs}
    assert main(argv) == 0
    assert before == {p: (out / "runs" / p / "history.json").stat().st_mtime_ns for p in runs}


def test_memguard_is_measured_against_the_same_model_without_it(tiny):
    """A query-time defense: the outsider's attacks also run on the same released model
    without it (``runs/<arm>.undefended``), and the report gives each family's drop, paired
    seed by seed, with its interval."""
    _, out = tiny
    for run in ("memguard", "memguard.seed-43"):
        bare = out / "runs" / f"{run}.undefended"
        assert json.loads((bare / "config.json").read_text())["defense"] == "none"
        assert (bare / "attacks" / "outsider" / "ml-leaks.json").exists()
        assert (out / "runs" / run / "attacks" / "outsider" / "ml-leaks.json").exists()
    assert not (out / "runs" / "plaintext.undefended").exists()  # nothing to take away
    arms = {a["name"]: a for a in json.loads((out / "results.json").read_text())["arms"]}
    assert isinstance(arms["memguard"]["headline"]["label_blind_auc_drop"], float)
    assert "label_blind_auc_drop" in arms["memguard"]["spread"]
    assert arms["plaintext"]["headline"]["label_blind_auc_drop"] is None
    assert any(r.arm == "memguard (undefended)" for r in read_rows(out / ROWS))
    report = (out / "report.md").read_text()
    assert "MemGuard's drop of the strongest label-blind AUC on the same model" in report
    assert "95% interval" in report

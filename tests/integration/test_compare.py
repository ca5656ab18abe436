"""The main job end to end: `fedpriv compare --quick` on the default experiment (slow)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w
from support import WRONG_NUMBERS

from fedpriv.cli import main
from fedpriv.compare.run import run_comparison
from fedpriv.compare.spec import ATTACK_KEYS, DEFAULT_EXPERIMENT, load_comparison
from fedpriv.errors import ConfigError
from fedpriv.report.browser import FIRST_SCREEN, find_browser, screenshot
from fedpriv.report.figures import FIGURES
from fedpriv.report.render import render_html, render_markdown
from fedpriv.report.results import ComparisonResult

pytestmark = pytest.mark.slow
ARMS = ["plaintext", "ckks", "ckks-threshold", "secagg", "ckks-dp", "ckks-memguard"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """`fedpriv compare --quick`, its output redirected to a file as in a CI log."""
    out = tmp_path_factory.mktemp("compare")
    log = out.parent / f"{out.name}.log"
    fedpriv = str(Path(sys.executable).with_name("fedpriv"))
    with log.open("w") as handle:
        proc = subprocess.run(
            [fedpriv, "compare", "--quick", "--out", str(out)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    assert proc.returncode == 0, log.read_text()[-3000:]
    return out


def _clock(line: str) -> int:
    minutes, seconds = line[1:6].split(":")
    return 60 * int(minutes) + int(seconds)


def test_progress_reaches_a_log_at_least_every_10_seconds(quick):
    lines = (quick.parent / f"{quick.name}.log").read_text().splitlines()
    stamped = [line for line in lines if re.match(r"\[\d\d:\d\d\] ", line)]
    assert len(stamped) > 10 and any("comparison: plaintext: federation" in s for s in stamped)
    times = [_clock(line) for line in stamped]
    # Stamps have one-second resolution: a 10 s heartbeat shows as at most 11 s apart.
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 11
    assert "results: " in lines[-1]


def test_report_files_and_arms(quick):
    results = json.loads((quick / "results.json").read_text())
    assert [arm["name"] for arm in results["arms"]] == ARMS
    for name in FIGURES:
        assert (quick / "figures" / f"{name}.png").stat().st_size > 1000
    html = (quick / "report.html").read_text()
    # Every figure, and the first screen's picture again (no sweep: the per-arm figure).
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("data:image/png;base64,") == len(FIGURES) + 1
    assert 'src="figures/' not in html  # self-contained: opens from disk anywhere
    # Written as a reader reads it: no raw Markdown, counts as counts, plurals that agree.
    text = re.sub(r"data:image/png;base64,[^\"]*", "", html)
    assert "**" not in text and "`" not in text
    assert not re.search(WRONG_NUMBERS, text), re.search(WRONG_NUMBERS, text)


def test_report_is_regenerated_from_results_json(quick):
    results = ComparisonResult.from_json(json.loads((quick / "results.json").read_text()))
    assert render_markdown(results) == (quick / "report.md").read_text()
    figures = {name: (quick / "figures" / f"{name}.png").read_bytes() for name in FIGURES}
    assert render_html(results, figures) == (quick / "report.html").read_text()


def test_quick_report_states_its_setup(quick):
    report = (quick / "report.md").read_text()
    assert "A `--quick` smoke run" in report and "Setup: dataset `digits`" in report
    assert "## Who learns what" in report


def test_report_states_what_each_arm_protects(quick):
    results = {a["name"]: a for a in json.loads((quick / "results.json").read_text())["arms"]}
    ckks = " ".join(results["ckks"]["protection"])
    assert "ciphertext only" in ckks and "still answers membership queries" in ckks
    assert "colluding with the server decrypts every update" in ckks
    secagg = " ".join(results["secagg"]["protection"])
    assert "reads each round's aggregate but no individual update" in secagg
    threshold = " ".join(results["ckks-threshold"]["protection"])
    arms = {arm.name: arm.config for arm in load_comparison(DEFAULT_EXPERIMENT).arms}
    t = arms["ckks-threshold"].decryption_threshold
    assert f"decrypting anything takes {t} of them" in threshold
    assert results["ckks-threshold"]["headline"]["server_inversion_target"] == "round aggregates"
    assert "epsilon" in " ".join(results["ckks-dp"]["protection"])
    assert "label-only attack cannot change" in " ".join(results["ckks-memguard"]["protection"])
    plaintext = results["plaintext"]["headline"]
    assert plaintext["server_inversion_psnr"] is not None
    assert results["ckks"]["headline"]["server_inversion_psnr"] is None
    # The packed format: about the plaintext bytes (round 1 broadcasts nothing under ckks).
    assert 0.8 < results["ckks"]["headline"]["bytes_vs_plaintext"] < 1.5


def test_compare_reuses_finished_work_and_resumes(quick):
    comparison = load_comparison(DEFAULT_EXPERIMENT, quick=True)
    before = json.loads((quick / "results.json").read_text())
    start = time.perf_counter()
    run_comparison(comparison, quick)
    assert time.perf_counter() - start < 30  # nothing reran: only the report was redrawn
    # An interrupted arm (no history yet) is run again; the others are reused.
    shutil.rmtree(quick / "runs" / "ckks" / "attacks" / "outsider")
    (quick / "runs" / "ckks" / "history.json").unlink()
    after = run_comparison(comparison, quick)
    # The reused arms keep their numbers. (The rerun arm's need not: Flower samples a fraction
    # of nodes by position among node ids that a fresh simulation draws anew.)
    old = {
        a["name"]: a["headline"]["final_accuracy"] for a in before["arms"] if a["name"] != "ckks"
    }
    new = {a.name: a.headline.final_accuracy for a in after.arms if a.name != "ckks"}
    assert old == pytest.approx(new, abs=1e-9)
    assert (quick / "runs" / "ckks" / "attacks" / "outsider" / "lira-online.json").exists()


def test_a_changed_attack_setting_reruns_only_the_attacks_it_affects(quick, tmp_path):
    """The plaintext arm of --quick with three shadow models instead of two (one arm: the
    other arms' attacks are keyed the same way, and rerunning them all took 4 minutes)."""
    quick_settings = load_comparison(DEFAULT_EXPERIMENT, quick=True)
    attacks = {
        key: smoke for key, (_, smoke) in ATTACK_KEYS.items()
    }  # the --quick budgets, written out
    attacks["shadows"] = 3
    spec = tomllib.loads(DEFAULT_EXPERIMENT.read_text())
    spec["run"]["num-server-rounds"] = 1
    spec["attacks"] = attacks
    spec["arms"] = {"plaintext": spec["arms"]["plaintext"]}
    experiment = tmp_path / "three-shadows.toml"
    experiment.write_text(tomli_w.dumps(spec))
    (plaintext,) = load_comparison(experiment).arms
    assert plaintext == quick_settings.arms[0]  # the same federation
    outsider = quick / "runs" / "plaintext" / "attacks" / "outsider"
    before = {p.name: p.stat().st_mtime_ns for p in outsider.glob("*.json")}
    inversion = quick / "runs" / "plaintext" / "attacks" / "curious-server" / "ig.json"
    inversion_mtime = inversion.stat().st_mtime_ns
    assert main(["compare", str(experiment), "--out", str(quick)]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in outsider.glob("*.json")}
    rerun = {name for name in before if after[name] != before[name]}
    # RMIA's reference models are the first shadow models: they change with them.
    shadow_based = {
        "shokri",
        "ml-leaks",
        "lira-offline",
        "lira-online",
        "rmia-offline",
        "rmia-online",
    }
    assert rerun == {f"{name}.json" for name in shadow_based}
    assert inversion.stat().st_mtime_ns == inversion_mtime  # unaffected: reused
    for name in ("shokri", "lira-offline", "lira-online"):
        stored = json.loads((outsider / f"{name}.json").read_text())
        assert stored["settings"]["num_shadows"] == 3
    results = json.loads((quick / "results.json").read_text())
    assert results["settings"]["membership"]["num_shadows"] == 3
    # Back to --quick: the shadow attacks run again with two, and say so.
    assert main(["compare", "--quick", "--out", str(quick)]) == 0
    assert json.loads((outsider / "shokri.json").read_text())["settings"]["num_shadows"] == 2


def test_bad_comparison_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_comparison(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\ndataset = "digits"\n[arms.a]\naggregation = "rot13"\n')
    with pytest.raises(ConfigError, match="unknown aggregation 'rot13'"):
        load_comparison(bad)


def _chromium() -> str | None:
    """Chromium, installed as the docs tell a user (Debian's package) where it is missing."""
    if find_browser() is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            capture_output=True,
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return find_browser()


def test_report_renders_in_a_browser_with_every_figure(quick, tmp_path):
    """Every figure decodes; the first screen shows the summary table and one picture,
    the rest is folded (no raw Markdown reaches the page)."""
    if _chromium() is None:
        pytest.skip("no Chromium, and `apt-get install chromium` was not possible here")
    shot = tmp_path / "report.png"
    rendering = screenshot(quick / "report.html", shot)
    assert rendering.images == len(FIGURES) + 1  # every figure, and the first screen's
    assert rendering.loaded == rendering.images
    assert shot.stat().st_size > 20_000
    assert rendering.table_bottom is not None and rendering.picture_bottom is not None
    assert rendering.table_bottom < rendering.picture_bottom <= FIRST_SCREEN
    page = (quick / "report.html").read_text()
    assert "**" not in page and "`" not in page and "<code>" in page


def test_coalitions_below_and_at_the_threshold_are_measured(quick):
    results = {
        a["name"]: a["headline"] for a in json.loads((quick / "results.json").read_text())["arms"]
    }
    threshold = results["ckks-threshold"]
    t = threshold["coalition_threshold"]
    assert (quick / "runs" / f"ckks-threshold.coalition-{t - 1}").is_dir()
    # t - 1 key shares decrypt nothing individual: the coalition falls back to aggregates ...
    assert threshold["coalition_below_target"] == "round aggregates"
    # ... t of them decrypt one client's upload, and the inversion runs on it.
    assert threshold["coalition_at_target"] == "client updates"
    assert threshold["coalition_at_psnr"] is not None
    assert (
        results["ckks"]["coalition_threshold"] == 1
        and results["plaintext"]["coalition_threshold"] == 0
    )
    report = (quick / "report.md").read_text()
    assert f"t = {t}:" in report

"""The main job end to end: `fedpriv compare --quick` on the default experiment (slow)."""

import json
import shutil
import time

import pytest

from fedpriv.cli import main
from fedpriv.compare.run import run_comparison
from fedpriv.compare.spec import DEFAULT_EXPERIMENT, load_comparison
from fedpriv.errors import ConfigError
from fedpriv.report.figures import FIGURES
from fedpriv.report.render import render_html, render_markdown
from fedpriv.report.results import ComparisonResult

pytestmark = pytest.mark.slow
ARMS = ["plaintext", "ckks", "secagg", "ckks-dp", "ckks-memguard"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "--quick", "--out", str(out)]) == 0
    return out


def test_report_files_and_arms(quick):
    results = json.loads((quick / "results.json").read_text())
    assert [arm["name"] for arm in results["arms"]] == ARMS
    for name in FIGURES:
        assert (quick / "figures" / f"{name}.png").stat().st_size > 1000
    html = (quick / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") == 5
    assert 'src="figures/' not in html  # self-contained: opens from disk anywhere


def test_report_is_regenerated_from_results_json(quick):
    results = ComparisonResult.from_json(json.loads((quick / "results.json").read_text()))
    assert render_markdown(results) == (quick / "report.md").read_text()
    figures = {name: (quick / "figures" / f"{name}.png").read_bytes() for name in FIGURES}
    assert render_html(results, figures) == (quick / "report.html").read_text()


def test_report_states_what_each_arm_protects(quick):
    results = {a["name"]: a for a in json.loads((quick / "results.json").read_text())["arms"]}
    ckks = " ".join(results["ckks"]["protection"])
    assert "ciphertext only" in ckks and "still answers membership queries" in ckks
    assert "colluding with the server decrypts every update" in ckks
    assert "masked vectors only" in " ".join(results["secagg"]["protection"])
    assert "epsilon" in " ".join(results["ckks-dp"]["protection"])
    assert "label-only attack is unchanged" in " ".join(results["ckks-memguard"]["protection"])
    plaintext = results["plaintext"]["headline"]
    assert plaintext["server_inversion_psnr"] is not None
    assert results["ckks"]["headline"]["server_inversion_psnr"] is None
    # The compact format: under 4x the plaintext bytes even on a 17k-parameter MLP (padding).
    assert 1.0 < results["ckks"]["headline"]["bytes_vs_plaintext"] < 4.0


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
    old = {a["name"]: a["headline"]["final_accuracy"] for a in before["arms"]}
    new = {a.name: a.headline.final_accuracy for a in after.arms}
    assert old == pytest.approx(new, abs=1e-9)
    assert (quick / "runs" / "ckks" / "attacks" / "outsider" / "lira-online.json").exists()


def test_bad_comparison_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_comparison(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\ndataset = "digits"\n[arms.a]\naggregation = "rot13"\n')
    with pytest.raises(ConfigError, match="unknown aggregation 'rot13'"):
        load_comparison(bad)

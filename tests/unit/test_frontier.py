"""Frontier sentences: where a protection's accuracy comes within five points, at what epsilon."""

from __future__ import annotations

from fedpriv.config import RunConfig
from fedpriv.history import History
from fedpriv.report.frontier import frontier_rows, frontier_sentences
from fedpriv.report.results import ArmResult, ComparisonResult, Headline, Provenance, SweepPoint


def _comparison(points: list[tuple[float, float, float]]) -> ComparisonResult:
    """A plaintext baseline at 0.90 and DP points (sigma, accuracy, epsilon)."""
    base = ArmResult(
        "plaintext", RunConfig(), "", History([]), {}, Headline(final_accuracy=0.90), seeds=[42]
    )
    sweeps = [
        SweepPoint(
            "dp",
            "dp-noise-multiplier",
            sigma,
            f"dp@{sigma}",
            Headline(
                final_accuracy=accuracy,
                dp_epsilon=epsilon,
                membership_auc=0.6,
                membership_attack="loss",
            ),  # fmt: skip
            seeds=[42],
        )
        for sigma, accuracy, epsilon in points
    ]
    provenance = Provenance("", "", "")
    return ComparisonResult("e.toml", "plaintext", {}, [base], provenance, sweeps=sweeps)


def test_the_usable_point_with_the_least_epsilon_is_named():
    results = _comparison([(0.5, 0.91, 400.0), (1.0, 0.86, 100.0), (2.0, 0.80, 30.0)])
    (sentence,) = frontier_sentences(results)
    # 0.86 is 4 points below 0.90 (usable) and spends less than sigma 0.5; 0.80 is not.
    assert "within 5 points of plaintext's accuracy 0.9000" in sentence
    assert "dp-noise-multiplier = 1.0 (accuracy 0.8600" in sentence
    assert "epsilon 100.00 claimed" in sentence and "2 of 3 points" in sentence
    assert "one seed each: no intervals" in sentence
    assert len(frontier_rows(results)) == 3


def test_no_usable_point_is_said_with_the_closest():
    results = _comparison([(2.0, 0.80, 30.0), (4.0, 0.70, 9.0)])
    (sentence,) = frontier_sentences(results)
    assert "no point of dp-noise-multiplier comes within 5 points" in sentence
    assert "the closest is dp-noise-multiplier = 2.0 (accuracy 0.8000" in sentence


def test_counts_agree_with_their_nouns():
    from fedpriv.narrative import count

    assert count(1, "round") == "1 round" and count(3, "round") == "3 rounds"
    assert count(1000, "client") == "1,000 clients"
    assert count(1, "training record") == "1 training record"
    assert count(2, "query", "queries") == "2 queries"

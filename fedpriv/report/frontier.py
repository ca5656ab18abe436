"""Privacy-utility frontiers: accuracy against each family's strongest attack, per knob value."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedpriv.narrative import fmt  # noqa: E402
from fedpriv.report.plots import save_figure  # noqa: E402
from fedpriv.report.results import ComparisonResult, Headline, SweepPoint  # noqa: E402

# Each panel: the headline field on the vertical axis, and what it is.
PANELS = (
    ("membership_auc", "outsider: strongest membership AUC"),
    ("membership_tpr_0_1", "outsider: TPR at 0.1% FPR (strongest)"),
    ("server_inversion_psnr", "curious server: inversion PSNR (dB)"),
)


def frontier_name(arm: str) -> str:
    """The figure's name (``figures/<name>.png``) for one swept arm."""
    return f"frontier-{arm}"


def point_label(point: SweepPoint) -> str:
    """A point's label: its knob value and, under DP, its epsilon (claimed / audited)."""
    label = f"{point.key}={point.value}"
    h = point.headline
    if h.dp_epsilon is not None:
        audited = f" / {fmt(h.audit_epsilon, '.1f')}" if h.audit_epsilon is not None else ""
        label += f"\neps {fmt(h.dp_epsilon, '.1f')}{audited} (claimed / audited)"
    return label


def frontier_figure(results: ComparisonResult, arm: str, path: Path) -> Path:
    """One arm's frontier: final accuracy against each family's strongest attack.

    Every point is the arm at one value of the swept key (means over seeds, with 95%
    intervals where several ran); the baseline arm (plaintext) is the reference star.
    """
    points = results.frontier(arm)
    baseline = results.arm(results.baseline)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.0 * len(PANELS), 4.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], PANELS, strict=True):
        drawn = [(p, _value(p.headline, key)) for p in points]
        drawn = [
            (p, v) for p, v in drawn if v is not None and p.headline.final_accuracy is not None
        ]
        if drawn:
            xs = [float(p.headline.final_accuracy or 0.0) for p, _ in drawn]
            ys = [v for _, v in drawn]
            ax.errorbar(
                xs,
                ys,
                xerr=[p.spread.get("final_accuracy", 0.0) for p, _ in drawn],
                yerr=[p.spread.get(key, 0.0) for p, _ in drawn],
                marker="o",
                capsize=3,
                label=arm,
            )
            for (point, _), x, y in zip(drawn, xs, ys, strict=True):
                ax.annotate(point_label(point), (x, y), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")  # fmt: skip
        else:
            ax.text(0.5, 0.9, "not applicable at any point", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)  # fmt: skip
        reference = _value(baseline.headline, key)
        if reference is not None and baseline.headline.final_accuracy is not None:
            ax.plot(
                [baseline.headline.final_accuracy],
                [reference],
                marker="*",
                markersize=12,
                linestyle="none",
                color="black",
                label=f"{baseline.name} (reference)",
            )
        ax.set_xlabel("final accuracy")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="best")
    key = points[0].key if points else "?"
    seeds = max((len(p.seeds) for p in points), default=1)
    spread = f"means and 95% intervals over {seeds} seeds" if seeds > 1 else "one seed"
    fig.suptitle(f"{arm}: privacy-utility frontier over {key} ({spread})", fontsize=10)
    save_figure(fig, path)
    return path


def swept(results: ComparisonResult) -> list[str]:
    """The swept arms' names, in the order of the sweep."""
    return list(dict.fromkeys(p.arm for p in results.sweeps))


def frontier_rows(results: ComparisonResult) -> list[list[str]]:
    """The sweep's points as table rows (arm, value, accuracy, attacks, epsilon)."""
    rows = []
    for point in results.sweeps:
        h = point.headline
        rows.append(
            [
                point.arm,
                f"{point.key}={point.value}",
                fmt(h.final_accuracy, ".4f"),
                f"{fmt(h.membership_auc)} ({h.membership_attack})",
                fmt(h.membership_tpr_0_1),
                fmt(h.server_inversion_psnr, ".1f"),
                f"{fmt(h.dp_epsilon, '.2f')} / {fmt(h.audit_epsilon, '.2f')}",
            ]
        )
    return rows


FRONTIER_HEADER = [
    "arm",
    "point",
    "final accuracy",
    "strongest membership AUC",
    "TPR at 0.1% FPR",
    "server inversion PSNR (dB)",
    "epsilon claimed / audited",
]


def _value(headline: Headline, key: str) -> float | None:
    value = getattr(headline, key)
    return float(value) if isinstance(value, int | float) else None

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


# How close to the baseline's accuracy a point must come to count as usable (issue 26: within
# five points of plaintext).
USABLE_GAP = 0.05


def frontier_sentences(results: ComparisonResult, gap: float = USABLE_GAP) -> list[str]:
    """Per swept arm: where its accuracy comes within ``gap`` of the baseline's, at what cost.

    Names the usable point that spends the least epsilon (under DP; else the largest knob
    value that stays usable) and the first point beyond it, from the numbers alone.
    """
    baseline = results.arm(results.baseline)
    reference = baseline.headline.final_accuracy
    if reference is None:
        return []
    lines = []
    for arm in swept(results):
        points = [p for p in results.frontier(arm) if p.headline.final_accuracy is not None]
        if not points:
            continue
        usable = [p for p in points if reference - float(p.headline.final_accuracy or 0) <= gap]
        seeds = max(len(p.seeds) for p in points)
        over = f"means over {seeds} seeds" if seeds > 1 else "one seed each: no intervals"
        if not usable:
            best = max(points, key=lambda p: float(p.headline.final_accuracy or 0))
            lines.append(
                f"`{arm}`: no point of {best.key} comes within {fmt(100 * gap, '.0f')} points "
                f"of {baseline.name}'s accuracy {fmt(reference, '.4f')}; the closest is "
                f"{_describe(best)} ({over})."
            )
            continue
        chosen = min(
            usable,
            key=lambda p: (
                p.headline.dp_epsilon if p.headline.dp_epsilon is not None else 0.0,
                -_numeric(p.value),
            ),
        )
        lines.append(
            f"`{arm}` comes within {fmt(100 * gap, '.0f')} points of {baseline.name}'s "
            f"accuracy {fmt(reference, '.4f')} at {_describe(chosen)}; {len(usable)} of "
            f"{len(points)} points do ({over})."
        )
    return lines


def _describe(point: SweepPoint) -> str:
    """A point as a sentence names it: its value, accuracy, attack AUC and epsilon."""
    h = point.headline
    text = f"{point.key} = {point.value} (accuracy {fmt(h.final_accuracy, '.4f')}"
    if h.membership_auc is not None:
        text += f", strongest membership AUC {fmt(h.membership_auc)} ({h.membership_attack})"
    if h.dp_epsilon is not None:
        audited = f", audited lower bound {fmt(h.audit_epsilon, '.2f')}" if h.audit_epsilon else ""
        text += f", epsilon {fmt(h.dp_epsilon, '.2f')} claimed{audited}"
    return text + ")"


def _numeric(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


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

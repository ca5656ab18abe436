"""Which figures a comparison and an attack run get, drawn from their results alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedpriv.attacks.metrics import image_metrics
from fedpriv.attacks.results import AttackResult, Family, Threat
from fedpriv.report.frontier import frontier_figure, frontier_name, swept
from fedpriv.report.plots import (
    ImageRow,
    Series,
    arm_colors,
    image_grid,
    labelled_rows,
    line_plot,
    roc_plot,
    spread_plot,
)
from fedpriv.report.results import ComparisonResult
from fedpriv.rundir import RunDirectory

FIGURES = {
    "spread": "per arm: final accuracy, the curious server's best inversion and the outsider's "
    "best membership AUC",
    "accuracy": "accuracy per round",
    "seconds": "wall seconds per round (round 1 also starts Ray and imports: left out)",
    "bytes": "bytes up and down per round (all clients)",
    "roc": "membership inference, strongest outsider attack per arm (log-log ROC)",
    "reconstructions": "gradient inversion (ig) per arm: curious server and colluding client, "
    "each under the true records it was matched to",
}
INVERSION_VIEWS = ((Threat.CURIOUS_SERVER, "server"), (Threat.COLLUDING_CLIENT, "colluder"))


def attack_figures(run_dir: str | Path, threat: str, results: list[AttackResult]) -> list[Path]:
    """Draw the figures of one threat's attack results beside them; return their paths."""
    rundir = RunDirectory(run_dir)
    drawn = []
    for result in results:
        images = rundir.attack_file(threat, result.attack, "-images.npz")
        if result.figure is None or not images.exists():
            continue
        data = np.load(images)
        top = "class mean" if result.family == Family.MODEL_INVERSION else "truth"
        label = "MI-Face" if result.family == Family.MODEL_INVERSION else result.attack
        mode = (result.settings or {}).get("mode")
        title = f"{label}{f' ({mode})' if mode else ''} on the {threat} view"
        drawn.append(
            image_grid(
                {top: data["truth"], label: data["reconstruction"]},
                rundir.attack_file(threat, result.attack, ".png"),
                title,
            )
        )
    curves = {r.attack: (r.roc.fpr, r.roc.tpr) for r in results if r.roc is not None}
    if curves:
        path = rundir.attack_file(threat, "roc", ".png")
        drawn.append(roc_plot(curves, path, f"membership inference ({threat})"))
    return drawn


def comparison_figures(out: Path, results: ComparisonResult) -> dict[str, Path]:
    """Draw the report's figures from the results; return their paths by name."""
    folder = out / "figures"
    paths = {name: folder / f"{name}.png" for name in FIGURES}
    arms = results.arms
    colors = arm_colors([a.name for a in arms])

    def series(key: str, first: int = 1) -> Series:
        return {
            a.name: (
                [r.round for r in a.history if r.round >= first],
                [float(getattr(r, key) or 0.0) for r in a.history if r.round >= first],
            )
            for a in arms
        }

    seeds = max((len(a.seeds) for a in arms), default=1)
    spread_plot(
        {
            "final accuracy": {
                a.name: (a.headline.final_accuracy, a.spread.get("final_accuracy", 0.0))
                for a in arms
            },
            "curious server: inversion PSNR (dB)": {
                a.name: (
                    a.headline.server_inversion_psnr,
                    a.spread.get("server_inversion_psnr", 0.0),
                )
                for a in arms
            },
            "outsider: membership AUC": {
                a.name: (a.headline.membership_auc, a.spread.get("membership_auc", 0.0))
                for a in arms
            },
        },
        paths["spread"],
        colors,
        seeds,
    )
    line_plot({"accuracy": series("accuracy")}, paths["accuracy"], colors)
    line_plot(
        {"seconds": series("seconds", first=2)},
        paths["seconds"],
        colors,
        note="round 1 left out: it also starts Ray and imports torch",
    )
    line_plot(
        {"bytes up per round": series("bytes_up"), "bytes down per round": series("bytes_down")},
        paths["bytes"],
        colors,
        log_scale=True,
    )
    curves, roc_colors = {}, {}
    for arm in arms:
        strongest = arm.strongest(Threat.OUTSIDER, Family.MEMBERSHIP)
        if strongest is not None and strongest.roc is not None:
            label = f"{arm.name}: {strongest.attack}, AUC {strongest.headline() or 0:.3f}"
            curves[label] = (strongest.roc.fpr, strongest.roc.tpr)
            roc_colors[label] = colors[arm.name]
    roc_plot(curves, paths["roc"], FIGURES["roc"], roc_colors)
    rows: list[ImageRow] = []
    for arm in arms:
        rundir = RunDirectory(arm.run_dir)
        for threat, label in INVERSION_VIEWS:
            npz = rundir.attack_file(threat, "ig", "-images.npz")
            result = arm.attack(threat, "ig")
            if npz.exists() and result is not None and result.scored:
                data = np.load(npz)
                truth, reconstruction = data["truth"][:4], data["reconstruction"][:4]
                psnr = [
                    f"{image_metrics(r, t).psnr:.1f} dB"
                    for r, t in zip(reconstruction, truth, strict=True)
                ]
                rows.append((f"{arm.name}, {label}: truth", truth, None))
                rows.append((f"{arm.name}, {label}: ig", reconstruction, psnr))
            else:
                reason = str(result.reason if result else "not run").split(":")[0]
                rows.append((f"{arm.name}, {label}: not applicable ({reason})", None, None))
    labelled_rows(rows, paths["reconstructions"])
    for swept_arm in swept(results):
        name = frontier_name(swept_arm)
        paths[name] = frontier_figure(results, swept_arm, folder / f"{name}.png")
    return paths

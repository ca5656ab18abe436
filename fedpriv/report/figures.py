"""Which figures a comparison and an attack run get, drawn from their results alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedpriv.attacks.results import AttackResult, Family, Threat
from fedpriv.report.plots import image_grid, labelled_rows, line_plot, roc_plot
from fedpriv.report.results import ComparisonResult
from fedpriv.rundir import RunDirectory

FIGURES = {
    "accuracy": "accuracy per round",
    "seconds": "wall seconds per round",
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

    def series(key: str) -> dict[str, tuple[list[int], list[float], str]]:
        return {
            a.name: ([r.round for r in a.history], [getattr(r, key) for r in a.history], "-")
            for a in arms
        }

    line_plot(series("accuracy"), "accuracy", paths["accuracy"])
    line_plot(series("seconds"), "seconds", paths["seconds"])
    traffic = {}
    for arm in arms:
        rounds = [r.round for r in arm.history]
        traffic[f"{arm.name} (up)"] = (rounds, [float(r.bytes_up) for r in arm.history], "-")
        traffic[f"{arm.name} (down)"] = (rounds, [float(r.bytes_down) for r in arm.history], "--")
    line_plot(traffic, "bytes", paths["bytes"], log_scale=True)
    curves = {}
    for arm in arms:
        strongest = arm.strongest(Threat.OUTSIDER, Family.MEMBERSHIP)
        if strongest is not None and strongest.roc is not None:
            curves[f"{arm.name} ({strongest.attack})"] = (strongest.roc.fpr, strongest.roc.tpr)
    roc_plot(curves, paths["roc"], FIGURES["roc"])
    rows: list[tuple[str, np.ndarray | None]] = []
    for arm in arms:
        rundir = RunDirectory(arm.run_dir)
        for threat, label in INVERSION_VIEWS:
            npz = rundir.attack_file(threat, "ig", "-images.npz")
            result = arm.attack(threat, "ig")
            if npz.exists() and result is not None and result.scored:
                data = np.load(npz)
                rows.append((f"{arm.name}, {label}: truth", data["truth"][:4]))
                rows.append((f"{arm.name}, {label}: ig", data["reconstruction"][:4]))
            else:
                reason = str(result.reason if result else "not run").split(":")[0]
                rows.append((f"{arm.name}, {label}: not applicable ({reason})", None))
    labelled_rows(rows, paths["reconstructions"])
    return paths

"""The comparison report: results.json, figures, report.md and a self-contained report.html.

Every number in the report is read from ``results.json``; :func:`render_markdown` and
:func:`render_html` are pure functions of it (and of the figure files), so the report can be
regenerated and checked at any time.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedpriv.attacks.membership import ATTACKS as MEMBERSHIP_ATTACKS  # noqa: E402
from fedpriv.report.figures import roc_plot  # noqa: E402
from fedpriv.rundir import RunDirectory  # noqa: E402

BASELINE = "plaintext"
FIGURES = {
    "accuracy": "accuracy per round",
    "seconds": "wall seconds per round",
    "bytes": "bytes up and down per round (all clients)",
    "roc": "membership inference, strongest outsider attack per arm (log-log ROC)",
    "reconstructions": "gradient inversion (ig) per arm: curious server and colluding client, "
    "each under the true records it was matched to",
}


# -- results --------------------------------------------------------------------------------
def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _arm_results(name: str, run_dir: Path) -> dict[str, Any]:
    rundir = RunDirectory(run_dir)
    config = rundir.read_config()
    rounds = rundir.read_history()["rounds"]
    attacks: dict[str, dict[str, Any]] = {}
    for folder in sorted((run_dir / "attacks").glob("*")):
        attacks[folder.name] = {}
        for path in sorted(folder.glob("*.json")):
            result = json.loads(path.read_text())
            attacks[folder.name][result["attack"]] = {
                "applicable": result["applicable"],
                "reason": result["reason"],
                "metrics": result["metrics"],
                "roc": result.get("roc"),
                "defense": (result.get("settings") or {}).get("defense"),
            }
    return {
        "name": name,
        "aggregation": config["aggregation"],
        "defense": config.get("defense", "none"),
        "run_dir": str(run_dir),
        "config": config,
        "rounds": [
            {
                k: r.get(k)
                for k in (
                    "round",
                    "accuracy",
                    "loss",
                    "seconds",
                    "bytes_up",
                    "bytes_down",
                    "dp_epsilon",
                )
            }
            for r in rounds
        ],
        "attacks": attacks,
    }


def _headline(arm: dict[str, Any]) -> dict[str, Any]:
    rounds = arm["rounds"]
    attacks = arm["attacks"]
    server_ig = attacks.get("curious-server", {}).get("ig", {})
    colluder_ig = attacks.get("colluding-client", {}).get("ig", {})
    outsider = attacks.get("outsider", {})
    membership = {
        name: r for name, r in outsider.items() if name in MEMBERSHIP_ATTACKS and r["applicable"]
    }
    strongest = max(membership, key=lambda n: membership[n]["metrics"]["auc"], default=None)
    mi_face = outsider.get("mi-face", {})
    defense = next((r["defense"] for r in membership.values() if r.get("defense")), None)
    return {
        "final_accuracy": rounds[-1]["accuracy"],
        # The median: round 1 also pays for Ray's start and the first imports.
        "seconds_per_round": float(np.median([r["seconds"] for r in rounds])),
        "bytes_per_round": float(np.mean([r["bytes_up"] + r["bytes_down"] for r in rounds])),
        "bytes_up_per_round": float(np.mean([r["bytes_up"] for r in rounds])),
        "dp_epsilon": rounds[-1].get("dp_epsilon"),
        "server_inversion_psnr": (server_ig.get("metrics") or {}).get("psnr"),
        "server_inversion_reason": server_ig.get("reason"),
        "colluder_inversion_psnr": (colluder_ig.get("metrics") or {}).get("psnr"),
        "colluder_inversion_reason": colluder_ig.get("reason"),
        "membership_attack": strongest,
        "membership_auc": membership[strongest]["metrics"]["auc"] if strongest else None,
        "membership_tpr_0_1": (
            membership[strongest]["metrics"]["tpr_at_0_1pct_fpr"] if strongest else None
        ),
        "label_only_auc": (outsider.get("label-only", {}).get("metrics") or {}).get("auc"),
        "shokri_auc": (outsider.get("shokri", {}).get("metrics") or {}).get("auc"),
        "model_inversion_accuracy": (mi_face.get("metrics") or {}).get("eval_accuracy"),
        "memguard_l1": defense["mean_l1_distortion"] if defense else None,
    }


def collect_results(comparison: Any, out: Path, timings: dict[str, float]) -> dict[str, Any]:
    """Gather every arm's history and attack results into the comparison's results."""
    arms = []
    for arm in comparison.arms:
        result = _arm_results(arm.name, out / "runs" / arm.name)
        result["headline"] = _headline(result)
        result["wall_seconds"] = timings.get(arm.name)
        arms.append(result)
    baseline = next(
        (a for a in arms if a["aggregation"] == BASELINE and a["defense"] == "none"), arms[0]
    )
    for arm in arms:
        base = baseline["headline"]
        arm["headline"]["bytes_vs_plaintext"] = (
            arm["headline"]["bytes_per_round"] / base["bytes_per_round"]
        )
        arm["headline"]["seconds_vs_plaintext"] = (
            arm["headline"]["seconds_per_round"] / base["seconds_per_round"]
        )
        arm["headline"]["accuracy_cost"] = (
            base["final_accuracy"] - arm["headline"]["final_accuracy"]
        )
        arm["protection"] = protection_text(arm, baseline)
    return {
        "experiment": comparison.source,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "baseline": baseline["name"],
        "settings": {
            "inversion": comparison.suite.inversion.to_dict(),
            "membership": comparison.suite.membership.to_dict(),
            "mi_face": comparison.suite.mi_face.to_dict(),
        },
        "arms": arms,
    }


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def protection_text(arm: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """What an arm protects against and what it does not, in sentences backed by its numbers."""
    h = arm["headline"]
    lines = []
    if h["server_inversion_psnr"] is not None:
        lines.append(
            f"The server sees every client update in plaintext: gradient inversion (ig) on its "
            f"view reaches {_fmt(h['server_inversion_psnr'], '.1f')} dB PSNR."
        )
    else:
        lines.append(f"The curious server cannot invert updates: {h['server_inversion_reason']}.")
    if arm["aggregation"] == "ckks":
        lines.append(
            "Every client holds the same secret key: a client colluding with the server "
            f"decrypts every update (ig {_fmt(h['colluder_inversion_psnr'], '.1f')} dB PSNR, "
            f"as on a plaintext server)."
        )
    if arm["aggregation"] == "secagg":
        lines.append(
            "SecAgg+ reveals the aggregate to the server, which still holds the global model "
            "in plaintext."
        )
    lines.append(
        f"The released model still answers membership queries: the strongest outsider attack "
        f"({h['membership_attack']}) reaches AUC {_fmt(h['membership_auc'])} with TPR "
        f"{_fmt(h['membership_tpr_0_1'])} at 0.1% FPR; black-box model inversion (MI-Face) "
        f"is recognized by a separate classifier for "
        f"{_fmt(h['model_inversion_accuracy'], '.0%')} of the classes."
    )
    if arm["defense"] == "dp":
        lines.append(
            f"Client-level DP spends epsilon {_fmt(h['dp_epsilon'], '.2f')} (delta "
            f"{arm['config'].get('dp-delta')}) and costs "
            f"{_fmt(100 * h['accuracy_cost'], '.1f')} accuracy points against {baseline['name']}."
        )
    if arm["defense"] == "dp-sgd":
        lines.append(
            f"Sample-level DP-SGD spends epsilon {_fmt(h['dp_epsilon'], '.2f')} per client and "
            f"costs {_fmt(100 * h['accuracy_cost'], '.1f')} accuracy points."
        )
    if arm["defense"] == "memguard":
        base = baseline["headline"]
        lines.append(
            f"MemGuard perturbs confidence scores (mean L1 distortion "
            f"{_fmt(h['memguard_l1'])}): Shokri's attack AUC is {_fmt(h['shokri_auc'])} here "
            f"against {_fmt(base['shokri_auc'])} without it. It keeps every predicted label, so "
            f"the label-only attack is unchanged (AUC {_fmt(h['label_only_auc'])})."
        )
    lines.append(
        f"Cost: {_fmt(h['bytes_vs_plaintext'], '.2f')}x the plaintext bytes per round, "
        f"{_fmt(h['seconds_vs_plaintext'], '.2f')}x its seconds per round."
    )
    return lines


# -- figures --------------------------------------------------------------------------------
def _line_figure(results: dict[str, Any], keys: list[str], ylabel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for arm in results["arms"]:
        rounds = [r["round"] for r in arm["rounds"]]
        for key in keys:
            values = [r[key] for r in arm["rounds"]]
            style = "--" if key == "bytes_down" else "-"
            label = arm["name"] if len(keys) == 1 else f"{arm['name']} ({key.split('_')[1]})"
            ax.plot(rounds, values, style, marker="o", markersize=3, label=label)
    if keys[0].startswith("bytes"):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _reconstruction_figure(results: dict[str, Any], path: Path, columns: int = 4) -> None:
    """Per arm and view: the matched true records above their reconstructions, or why not."""
    rows: list[tuple[str, np.ndarray | None]] = []
    for arm in results["arms"]:
        for threat, label in (("curious-server", "server"), ("colluding-client", "colluder")):
            npz = Path(arm["run_dir"]) / "attacks" / threat / "ig-images.npz"
            entry = arm["attacks"].get(threat, {}).get("ig", {})
            if npz.exists():
                data = np.load(npz)
                rows.append((f"{arm['name']}, {label}: truth", data["truth"][:columns]))
                rows.append((f"{arm['name']}, {label}: ig", data["reconstruction"][:columns]))
            else:
                reason = str(entry.get("reason") or "not run").split(":")[0]
                rows.append((f"{arm['name']}, {label}: not applicable ({reason})", None))
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.0 * columns + 3.2, 0.9 * len(rows)), squeeze=False
    )
    for i, (name, images) in enumerate(rows):
        for j in range(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if images is not None and j < len(images):
                ax.imshow(np.clip(images[j][0], 0, 1), cmap="gray", vmin=0, vmax=1)
            else:
                for spine in ax.spines.values():
                    spine.set_visible(False)
        axes[i][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_figures(out: Path, results: dict[str, Any]) -> dict[str, Path]:
    """Draw the report's figures from the results; return their paths by name."""
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.png" for name in FIGURES}
    _line_figure(results, ["accuracy"], "accuracy", paths["accuracy"])
    _line_figure(results, ["seconds"], "seconds", paths["seconds"])
    _line_figure(results, ["bytes_up", "bytes_down"], "bytes", paths["bytes"])
    curves = {}
    for arm in results["arms"]:
        attack = arm["headline"]["membership_attack"]
        if attack:
            roc = arm["attacks"]["outsider"][attack]["roc"]
            curves[f"{arm['name']} ({attack})"] = (roc["fpr"], roc["tpr"])
    roc_plot(curves, paths["roc"], FIGURES["roc"])
    _reconstruction_figure(results, paths["reconstructions"])
    return paths


# -- documents ------------------------------------------------------------------------------
def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """The summary table: one row per arm (also what the console prints)."""
    rows = []
    for arm in results["arms"]:
        h = arm["headline"]
        inversion = (
            f"{_fmt(h['server_inversion_psnr'], '.1f')} dB"
            if h["server_inversion_psnr"] is not None
            else "n/a (" + str(h["server_inversion_reason"]).split(":")[0] + ")"
        )
        rows.append(
            [
                arm["name"],
                _fmt(h["final_accuracy"], ".4f"),
                _fmt(h["seconds_per_round"], ".2f"),
                _fmt(h["bytes_vs_plaintext"], ".2f") + "x",
                inversion,
                f"{_fmt(h['membership_auc'])} ({h['membership_attack']})",
                _fmt(h["membership_tpr_0_1"]),
                _fmt(h["model_inversion_accuracy"], ".2f"),
                _fmt(h["dp_epsilon"], ".2f"),
            ]
        )
    return rows


SUMMARY_HEADER = [
    "arm",
    "final accuracy",
    "seconds/round (median)",
    "bytes/round vs plaintext",
    "gradient inversion PSNR (server view)",
    "membership AUC (outsider)",
    "TPR at 0.1% FPR",
    "MI-Face eval accuracy",
    "DP epsilon",
]


def render_markdown(results: dict[str, Any]) -> str:
    """report.md, from the results alone."""
    lines = [
        "# fedpriv comparison",
        "",
        f"Experiment `{results['experiment']}`, generated {results['generated']}; baseline "
        f"`{results['baseline']}`. Every number below is in `results.json`.",
        "",
        "| " + " | ".join(SUMMARY_HEADER) + " |",
        "|" + "---|" * len(SUMMARY_HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    lines += ["", "## What each arm protects against", ""]
    for arm in results["arms"]:
        lines.append(f"### {arm['name']}")
        lines.append("")
        lines += [f"- {sentence}" for sentence in arm["protection"]]
        lines.append("")
    lines += ["## Figures", ""]
    for name, caption in FIGURES.items():
        lines += [f"![{caption}](figures/{name}.png)", "", f"*{caption}*", ""]
    return "\n".join(lines)


def render_html(results: dict[str, Any], figures: dict[str, bytes]) -> str:
    """report.html (figures embedded), from the results and the figure files alone."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in SUMMARY_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>"
        for row in summary_rows(results)
    )
    arms = "".join(
        f"<h3>{esc(arm['name'])}</h3><ul>"
        + "".join(f"<li>{esc(s)}</li>" for s in arm["protection"])
        + "</ul>"
        for arm in results["arms"]
    )
    images = "".join(
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(figures[name]).decode()}"><figcaption>{esc(caption)}</figcaption>'
        "</figure>"
        for name, caption in FIGURES.items()
        if name in figures
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #bbb;"
        "padding:4px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
        "figure{margin:1.5em 0}img{max-width:100%}figcaption{font-style:italic}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>fedpriv comparison</title>"
        f"<style>{style}</style></head><body><h1>fedpriv comparison</h1>"
        f"<p>Experiment <code>{esc(results['experiment'])}</code>, generated "
        f"{esc(results['generated'])}; baseline <code>{esc(results['baseline'])}</code>. "
        "Every number below is in <code>results.json</code>.</p>"
        f"<table><tr>{head}</tr>{body}</table><h2>What each arm protects against</h2>{arms}"
        f"<h2>Figures</h2>{images}</body></html>"
    )


def write_report(out: Path, results: dict[str, Any]) -> None:
    """Write figures, report.md and report.html for ``results``."""
    paths = write_figures(out, results)
    (out / "report.md").write_text(render_markdown(results), encoding="utf-8")
    figures = {name: path.read_bytes() for name, path in paths.items()}
    (out / "report.html").write_text(render_html(results, figures), encoding="utf-8")

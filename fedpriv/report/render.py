"""report.md and a self-contained report.html, as pure functions of the comparison's results.

One module: report.md and report.html are one document in two renderings, built from the
same sections.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import markdown

from fedpriv.attacks.inversion import TARGETS
from fedpriv.attacks.results import Status
from fedpriv.attacks.views import Capability
from fedpriv.narrative import count, fmt
from fedpriv.report.figures import FIGURES, comparison_figures
from fedpriv.report.frontier import (
    FRONTIER_HEADER,
    frontier_name,
    frontier_rows,
    frontier_sentences,
    swept,
)
from fedpriv.report.results import ComparisonResult, Headline
from fedpriv.schemes.base import load_scheme

WHO_NOTE = (
    "Each cell is the strongest attack of its family for that attacker (a maximum over "
    "ig, dlg and idlg, or over the membership attacks: biased upward), or why none applies. "
    "The malicious server acts in one round of a second federation beside the arm (the "
    "[malicious-server] table of the experiment): it crafts the models it sends (isolation, "
    "imprint), under threshold CKKS asks the parties to decrypt one client's upload "
    "(decrypt-one), under single-key CKKS broadcasts one client's upload as the aggregate "
    "(broadcast-one). 'Holds against' names the adversary the arm's protocol holds against "
    "(passive or deviating server, c colluding clients), as tests/adversarial plays it."
)
SUMMARY_HEADER = [
    "arm",
    "final accuracy",
    "seconds/round (median)",
    "bytes/round vs plaintext",
    "gradient inversion PSNR (server view)",
    "membership AUC (outsider)",
    "TPR at 0.1% FPR",
    "RMIA AUC (outsider)",
    "client-level AUC (server / outsider)",
    "MI-Face eval accuracy",
    "DP epsilon (claimed / audited lower bound)",
]


def _client_level(h: Headline) -> str:
    """The server's client-level AUC, or why it does not apply."""
    if h.client_membership_server_auc is not None:
        return fmt(h.client_membership_server_auc)
    reason = h.client_membership_server_reason
    return "n/a" if not reason else "n/a (" + str(reason).split(":")[0] + ")"


def _value(h: Headline, spread: dict[str, float], key: str, spec: str = ".3f") -> str:
    """A headline number, with its 95% interval's half-width where several seeds ran."""
    value = getattr(h, key)
    if key in spread and value is not None:
        return f"{fmt(value, spec)} ± {fmt(spread[key], spec)}"
    return fmt(value, spec)


def setup_lines(results: ComparisonResult) -> list[str]:
    """What ran, stated before any number: the federation, recipe, seeds, budgets, defenses."""
    base = results.arm(results.baseline)
    c = base.config
    seeds = base.seeds or [c.seed]
    inversion = results.settings.get("inversion", {})
    membership = results.settings.get("membership", {})
    assert isinstance(inversion, dict) and isinstance(membership, dict)
    lines = [
        f"Setup: dataset `{c.dataset}`, model `{c.model}`, {count(c.num_clients, 'client')} "
        f"({c.held_out_clients} held out), {fmt(c.fraction_train, '.2f')} of them trained per "
        f"round, {count(c.num_server_rounds, 'round')}; local recipe: "
        + (
            f"{count(c.max_train_samples, 'training record')} per client"
            if c.max_train_samples
            else "all training records per client"
        )
        + f", {count(c.local_epochs, 'epoch')} "
        f"of batch {c.batch_size}, learning rate {c.learning_rate}, momentum {c.momentum}; "
        f"seeds {', '.join(str(s) for s in seeds)}"
        + (
            " (means with 95% intervals over them)"
            if len(seeds) > 1
            else " (one seed: no intervals; `--seeds 3` gives means with 95% intervals)"
        )
        + ".",
        f"Attack budgets: gradient inversion {inversion.get('iterations')} iterations x "
        f"{inversion.get('restarts')} restarts on up to "
        f"{results.settings.get('max_clients') or 'every'} client(s) per round; "
        f"{membership.get('num_shadows')} shadow models.",
    ]
    for arm in results.arms:
        a = arm.config
        if str(a.defense) == "dp":
            lines.append(
                f"`{arm.name}`: client-level DP, sigma {a.dp_noise_multiplier}, clipping norm "
                f"{a.dp_clipping_norm}, delta {a.dp_delta:g}."
            )
        elif str(a.defense) == "memguard":
            lines.append(f"`{arm.name}`: MemGuard, epsilon {a.memguard_epsilon}.")
    if results.quick:
        lines.append(
            "**A `--quick` smoke run**: one round and the smallest attack budgets; its numbers "
            "show that everything runs, not what protects."
        )
    return lines


def summary_rows(results: ComparisonResult) -> list[list[str]]:
    """The summary table: one row per arm (also what the console prints)."""
    rows = []
    for arm in results.arms:
        h, s = arm.headline, arm.spread
        if h.server_inversion_psnr is not None:
            notes = [h.server_inversion_attack or "ig"]
            if h.server_inversion_target == TARGETS[Capability.AGGREGATE_UPDATES]:
                notes.append("aggregate")
            psnr = _value(h, s, "server_inversion_psnr", ".1f")
            inversion = f"{psnr} dB ({', '.join(notes)})"
        elif h.server_inversion_status == Status.DIVERGED:
            inversion = "diverged (no score)"
        else:
            inversion = "n/a (" + str(h.server_inversion_reason).split(":")[0] + ")"
        rows.append(
            [
                arm.name,
                _value(h, s, "final_accuracy", ".4f"),
                fmt(h.seconds_per_round, ".2f"),
                fmt(h.bytes_vs_plaintext, ".2f") + "x",
                inversion,
                f"{_value(h, s, 'membership_auc')} ({h.membership_attack})",
                fmt(h.membership_tpr_0_1),
                _value(h, s, "rmia_auc"),
                f"{_client_level(h)} / {fmt(h.client_membership_outsider_auc)}",
                fmt(h.model_inversion_accuracy, ".2f"),
                f"{fmt(h.dp_epsilon, '.2f')} / {fmt(h.audit_epsilon, '.2f')}",
            ]
        )
    return rows


WHO_HEADER = [
    "arm",
    "holds against (tested)",
    "curious server (inversion)",
    "malicious server (isolated update)",
    "server + 1 colluding client (inversion)",
    "coalition of t - 1 / t clients (inversion)",
    "outsider (membership AUC)",
]


def _cell(
    value: float | None, attack: str | None, reason: str | None, target: str | None = None
) -> str:
    """A measured PSNR with the attack that reached it (and on what), or why none applies."""
    if value is not None:
        on = ", aggregate" if target == TARGETS[Capability.AGGREGATE_UPDATES] else ""
        return f"{fmt(value, '.1f')} dB ({attack}{on})"
    return "n/a" if not reason else "n/a (" + str(reason).split(":")[0] + ")"


def who_learns_rows(results: ComparisonResult) -> list[list[str]]:
    """Who learns what, per arm: the strongest attack of each threat, or why none applies."""
    rows = []
    for arm in results.arms:
        h = arm.headline
        rows.append(
            [
                arm.name,
                load_scheme(arm.config).holds_against(),
                _cell(
                    h.server_inversion_psnr,
                    h.server_inversion_attack,
                    h.server_inversion_reason,
                    h.server_inversion_target,
                ),
                _cell(h.malicious_inversion_psnr, h.malicious_inversion_attack, h.malicious_reason),
                _cell(
                    h.colluder_inversion_psnr,
                    h.colluder_inversion_attack,
                    h.colluder_inversion_reason,
                    h.colluder_inversion_target,
                ),
                _coalitions(h),
                f"{fmt(h.membership_auc)} ({h.membership_attack})",
            ]
        )
    return rows


def _coalitions(h: Headline) -> str:
    """The coalitions just below and at the scheme's threshold, or why there is none."""
    t = h.coalition_threshold
    if t is None:
        return "not measured"
    if t < 2:
        return "the server alone reads updates" if t == 0 else "t = 1: the previous column"
    below = _cell(h.coalition_below_psnr, "ig", h.coalition_below_reason, h.coalition_below_target)
    at = _cell(h.coalition_at_psnr, "ig", h.coalition_at_reason, h.coalition_at_target)
    return f"t = {t}: {below} / {at}"


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


FRONTIER_NOTE = (
    "Each point is a swept arm at one value of the swept key (means over its seeds): final "
    "accuracy against the strongest attack of each family, with epsilon claimed by the "
    "accountant and audited from canaries where DP runs. The baseline arm is the reference."
)


def stamp(results: ComparisonResult) -> str:
    """Where the numbers come from: experiment, command, commit and date."""
    p = results.provenance
    return (
        f"Experiment `{results.experiment}`, generated {p.generated} by `{p.command}` at commit "
        f"`{p.commit}`; baseline `{results.baseline}`. Every number below is in `results.json`."
    )


def markdown_table(results: ComparisonResult) -> list[str]:
    """The summary table as Markdown lines."""
    return _markdown(SUMMARY_HEADER, summary_rows(results))


def who_learns_table(results: ComparisonResult) -> list[str]:
    """The who-learns-what table as Markdown lines, after its note."""
    return [WHO_NOTE, "", *_markdown(WHO_HEADER, who_learns_rows(results))]


@dataclass(frozen=True)
class Section:
    """A part of the report: a heading and its Markdown; ``first_screen`` ones stay open."""

    title: str
    body: str
    first_screen: bool = False


# The ``src`` a figure's image gets in the Markdown, from the figure's name.
ImageSource = Callable[[str], str]


def _figure(name: str, caption: str, source: ImageSource, note: bool = True) -> list[str]:
    """A figure as Markdown: the image and, with ``note``, its caption beneath in italics."""
    return [f"![{caption}]({source(name)})", "", *([f"*{caption}*", ""] if note else [])]


def report_sections(results: ComparisonResult, source: ImageSource) -> list[Section]:
    """The report, section by section: the table and one picture first, the detail after.

    The first screen holds what a reader came for: the summary table and one frontier (the
    first swept arm's) or, without a sweep, the per-arm picture of accuracy against attack
    success. Everything else (setup, who learns what, each arm's sentences, every figure)
    follows in sections the HTML report folds.
    """
    lead = [stamp(results), "", *markdown_table(results), ""]
    arms = swept(results)
    if arms:
        lead += _figure(frontier_name(arms[0]), f"{arms[0]}: privacy-utility frontier", source)
    else:
        lead += _figure("spread", FIGURES["spread"], source)
    sections = [
        Section("Summary", "\n".join(lead), first_screen=True),
        Section("Setup", "\n".join(f"- {line}" for line in setup_lines(results))),
        Section("Who learns what", "\n".join(who_learns_table(results))),
    ]
    protects: list[str] = []
    for arm in results.arms:
        protects += [f"### {arm.name}", "", *(f"- {s}" for s in arm.protection), ""]
    sections.append(Section("What each arm protects against", "\n".join(protects)))
    if results.sweeps:
        lines = [FRONTIER_NOTE, "", *_markdown(FRONTIER_HEADER, frontier_rows(results)), ""]
        lines += [*(f"- {sentence}" for sentence in frontier_sentences(results)), ""]
        for name in swept(results):
            lines += _figure(frontier_name(name), f"{name}: frontier", source, note=False)
        sections.append(Section("Privacy-utility frontiers", "\n".join(lines)))
    figures: list[str] = []
    for name, caption in FIGURES.items():
        figures += _figure(name, caption, source)
    sections.append(Section("Figures", "\n".join(figures)))
    return sections


def render_markdown(results: ComparisonResult) -> str:
    """report.md, from the results alone."""
    lines = ["# fedpriv comparison", ""]
    for section in report_sections(results, lambda name: f"figures/{name}.png"):
        heading = [] if section.first_screen else [f"## {section.title}", ""]
        lines += [*heading, section.body.rstrip(), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:1.5em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #bbb;"
    "padding:3px 6px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
    "img{max-width:100%}p>img{display:block;margin:0.5em 0}em{color:#444}"
    "details{margin:0.8em 0;border-top:1px solid #ddd;padding-top:0.4em}"
    "summary{font-size:1.3em;font-weight:bold;cursor:pointer}"
)


def render_html(results: ComparisonResult, figures: dict[str, bytes]) -> str:
    """report.html (figures embedded), from the results and the figure files alone.

    Each section's Markdown is rendered by the ``markdown`` library (tables, code spans,
    emphasis as in report.md); sections after the first screen are folded in
    ``<details>`` so the page opens on the table and one picture.
    """

    def embedded(name: str) -> str:
        data = figures.get(name)
        return f"data:image/png;base64,{base64.b64encode(data).decode()}" if data else ""

    parts = []
    for section in report_sections(results, embedded):
        body = markdown.markdown(section.body, extensions=["tables"])
        if section.first_screen:
            parts.append(f'<section id="first-screen">{body}</section>')
        else:
            parts.append(
                f"<details><summary>{html.escape(section.title)}</summary>{body}</details>"
            )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>fedpriv comparison</title>"
        f"<style>{STYLE}</style></head><body><h1>fedpriv comparison</h1>"
        + "".join(parts)
        + "</body></html>"
    )


def write_report(out: Path, results: ComparisonResult) -> None:
    """Write figures, report.md and report.html for ``results``."""
    paths = comparison_figures(out, results)
    (out / "report.md").write_text(render_markdown(results), encoding="utf-8")
    figures = {name: path.read_bytes() for name, path in paths.items()}
    (out / "report.html").write_text(render_html(results, figures), encoding="utf-8")

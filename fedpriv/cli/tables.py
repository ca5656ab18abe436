"""Tables the commands print: a run's history, and the results of attacks."""

from __future__ import annotations

import shutil

from rich.console import Console
from rich.table import Table

from fedpriv.attacks.results import AttackResult, MembershipMetrics, ReconstructionMetrics
from fedpriv.cli.progress import console
from fedpriv.history import History


def print_history(history: History) -> None:
    """One row per round: accuracy, loss, seconds, bytes, clients."""
    table = Table(title=f"{history.aggregation} federation")
    for column in ("round", "accuracy", "loss", "seconds", "bytes up", "bytes down", "clients"):
        table.add_column(column, justify="right")
    for record in history:
        table.add_row(
            str(record.round),
            "-" if record.accuracy is None else f"{record.accuracy:.4f}",
            "-" if record.loss is None else f"{record.loss:.4f}",
            f"{record.seconds:.2f}",
            f"{record.bytes_up:,}",
            f"{record.bytes_down:,}",
            str(len(record.clients)),
        )
    console.print(table)


# The widest a summary table is printed (a terminal's usual width; the files hold all of it).
SUMMARY_WIDTH = 120


def print_summary(
    header: list[str],
    rows: list[list[str]],
    width: int | None = None,
    title: str = "fedpriv comparison",
) -> None:
    """A wide table split into tables that fit the terminal (120 columns at most).

    Every part starts with the first column (the arm, the preset); headers wrap at spaces,
    cells stay whole. The result files hold the table in one piece.
    """
    columns = width or min(shutil.get_terminal_size((SUMMARY_WIDTH, 24)).columns, SUMMARY_WIDTH)
    console = Console(width=columns)
    for part, indices in enumerate(_parts(header, rows, columns)):
        table = Table(title=title + (f" ({part + 1})" if part else ""))
        for index in indices:
            table.add_column(
                header[index],
                justify="left" if index == 0 else "right",
                no_wrap=index == 0,
                width=_width(header, rows, index),
            )
        for row in rows:
            table.add_row(*(row[index] for index in indices))
        console.print(table)


def _parts(header: list[str], rows: list[list[str]], width: int) -> list[list[int]]:
    """Column indices of each part: the arm, then as many columns as fit, in order."""

    def needs(index: int) -> int:
        return _width(header, rows, index) + 3  # the border and padding of a column

    parts: list[list[int]] = []
    current = [0]
    used = needs(0) + 1
    for index in range(1, len(header)):
        if len(current) > 1 and used + needs(index) > width:
            parts.append(current)
            current, used = [0], needs(0) + 1
        current.append(index)
        used += needs(index)
    parts.append(current)
    return parts


def _width(header: list[str], rows: list[list[str]], index: int) -> int:
    """A column's width: its longest cell, or its header wrapped onto two lines at a space."""
    words = header[index].split()
    two_lines = min(
        (
            max(len(" ".join(words[:cut])), len(" ".join(words[cut:])))
            for cut in range(1, len(words))
        ),
        default=len(header[index]),
    )
    return max([two_lines, *(len(row[index]) for row in rows)])


def attack_summary(result: AttackResult) -> str:
    """One line for one attack result."""
    if not result.applicable:
        return f"not applicable: {result.reason}"
    m = result.metrics
    if m is None:
        return f"{result.status}: {result.reason}"
    if isinstance(m, MembershipMetrics):
        rates = ", ".join(
            f"TPR@{label}FPR {value:.3f}"
            + ("" if m.resolved(fpr) else " (rests on 0 false positives)")
            for label, fpr, value in (
                ("1%", 0.01, m.tpr_at_1pct_fpr),
                ("0.1%", 0.001, m.tpr_at_0_1pct_fpr),
                ("0.01%", 0.0001, m.tpr_at_0_01pct_fpr),
            )
        )
        return f"AUC {m.auc:.3f}, {rates}; {m.members} members, {m.non_members} non-members"
    if isinstance(m, ReconstructionMetrics):
        return f"PSNR {m.psnr:.1f} dB, SSIM {m.ssim:.3f}, labels {m.label_accuracy:.2f}"
    return f"eval accuracy {m.eval_accuracy:.2f}, SSIM to class mean {m.ssim_to_class_mean:.3f}"

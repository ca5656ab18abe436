"""Tables the commands print: a run's history, and the results of attacks."""

from __future__ import annotations

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

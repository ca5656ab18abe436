"""What each arm protects against and what it does not, in sentences backed by its numbers."""

from __future__ import annotations

import functools

import numpy as np

from fedpriv.adversary import Adversary, ServerAttack
from fedpriv.attacks.inversion import TARGETS
from fedpriv.attacks.results import Status
from fedpriv.attacks.views import Capability
from fedpriv.data.datasets import load_dataset
from fedpriv.narrative import fmt
from fedpriv.report.results import ArmResult
from fedpriv.schemes.base import load_scheme

AGGREGATES = TARGETS[Capability.AGGREGATE_UPDATES]


@functools.cache
def noise_floor(dataset: str) -> float:
    """The PSNR a constant image reaches on ``dataset`` (the best constant: the mean pixel).

    A reconstruction at or below it shows nothing of the record: the attack failed.
    """
    x = load_dataset(dataset).x
    return float(10 * np.log10(1.0 / np.mean((x - x.mean()) ** 2)))


def effect(arm: ArmResult, baseline: ArmResult, key: str, what: str) -> str:
    """Whether the arm's ``key`` differs from the baseline's by an effect or by run-to-run noise.

    A difference is called an effect only where the two arms' 95% intervals over their seeds
    separate (the difference exceeds the sum of their half-widths). With one seed the
    spread is unmeasured, and the sentence says so instead of claiming anything.
    """
    a, b = arm.headline.numbers().get(key), baseline.headline.numbers().get(key)
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return f"{_sentence(what)} is missing on one side: no effect is claimed."
    difference = float(b) - float(a)
    if len(arm.seeds) < 2 or len(baseline.seeds) < 2 or key not in arm.spread:
        return (
            f"Against {baseline.name}, {what} differs by {fmt(-difference, '+.3f')} on one "
            "seed; identical runs of a federation can differ by as much (training is "
            "chaotic), so this is no measured effect: run `fedpriv compare --seeds 3` before "
            "reading one."
        )
    half, other = arm.spread[key], baseline.spread.get(key, 0.0)
    verdict = (
        "the intervals separate: an effect"
        if abs(difference) > half + other
        else "the intervals overlap: no effect is claimed"
    )
    direction = "lower" if difference >= 0 else "higher"
    return (
        f"Against {baseline.name}, {what} is {direction} by {fmt(abs(difference), '.3f')} "
        f"({fmt(a)} ± {fmt(half, '.3f')} against {fmt(b)} ± {fmt(other, '.3f')}, 95% "
        f"intervals over {len(arm.seeds)} seeds); {verdict}."
    )


def paired_effect(arm: ArmResult, key: str, what: str) -> str:
    """Whether a difference measured on the same model, seed by seed, is an effect.

    ``key`` holds the difference itself (its mean over seeds, its 95% half-width in the
    spread): an effect where the interval excludes zero.
    """
    value = arm.headline.numbers().get(key)
    if not isinstance(value, int | float):
        return f"{_sentence(what)} was not measured: no effect is claimed."
    if len(arm.seeds) < 2 or key not in arm.spread:
        return (
            f"{_sentence(what)}: {fmt(value, '+.3f')} on one seed (no interval: run "
            "`fedpriv compare --seeds 3` to measure one)."
        )
    spread = arm.spread[key]
    verdict = (
        "the interval excludes zero: an effect"
        if abs(value) > spread
        else "the interval includes zero: no effect is claimed"
    )
    return (
        f"{_sentence(what)}: {fmt(value, '+.3f')} (95% interval ±{fmt(spread, '.3f')} over "
        f"{len(arm.seeds)} seeds); {verdict}."
    )


def _sentence(text: str) -> str:
    """``text`` as a sentence starts (its first letter upper case, the rest as written)."""
    return text[:1].upper() + text[1:]


def membership_effect(arm: ArmResult, baseline: ArmResult) -> str:
    """Whether the arm's strongest outsider AUC is lower than the baseline's by an effect."""
    return effect(arm, baseline, "membership_auc", "the strongest outsider AUC")


def protection_text(arm: ArmResult, baseline: ArmResult) -> list[str]:
    """The sentences of one arm: the server's view, its scheme's and defense's, the costs."""
    h = arm.headline
    numbers = h.numbers()
    lines = []
    floor = noise_floor(arm.config.dataset)
    if h.server_inversion_psnr is not None and h.server_inversion_psnr <= floor + 1.0:
        seen = (
            "each round's aggregate but no individual update"
            if h.server_inversion_target == AGGREGATES
            else "individual updates"
        )
        lines.append(
            f"The server reads {seen}, and gradient inversion on what it reads fails: its best "
            f"reconstruction ({fmt(h.server_inversion_psnr, '.1f')} dB PSNR, "
            f"{h.server_inversion_attack}) is no better than a constant image "
            f"({fmt(floor, '.1f')} dB). A failed attack, not a protection."
        )
    elif h.server_inversion_psnr is not None and h.server_inversion_target == AGGREGATES:
        lines.append(
            "The server reads each round's aggregate but no individual update: gradient "
            f"inversion on the aggregates reaches {fmt(h.server_inversion_psnr, '.1f')} dB "
            f"PSNR (the strongest of ig, dlg and idlg: {h.server_inversion_attack})."
        )
    elif h.server_inversion_psnr is not None:
        lines.append(
            "The server sees every client update in plaintext: gradient inversion on its "
            f"view reaches {fmt(h.server_inversion_psnr, '.1f')} dB PSNR (the strongest of "
            f"ig, dlg and idlg: {h.server_inversion_attack})."
        )
    elif h.server_inversion_status == Status.DIVERGED:
        lines.append(
            "Gradient inversion on the server's view failed: "
            f"{h.server_inversion_reason}. This is a failed attack, not a protection."
        )
    else:
        lines.append(f"The curious server cannot invert updates: {h.server_inversion_reason}.")
    if (
        h.malicious_inversion_psnr is not None
        and Adversary.parse(h.malicious_plan or "").attack == ServerAttack.DECRYPT_ONE
    ):
        lines.append(
            "A malicious server asks the threshold parties for decryption shares of one "
            "client's own upload instead of the round's sum (the parties cannot tell the two "
            f"apart) and inverts what they decrypt to {fmt(h.malicious_inversion_psnr, '.1f')} "
            f"dB PSNR ({h.malicious_inversion_attack}): this arm does not stop a server that "
            "cheats."
        )
    elif h.malicious_inversion_psnr is not None:
        lines.append(
            "A malicious server that crafts the models it sends isolates one client's update "
            f"from what it reads and inverts it to {fmt(h.malicious_inversion_psnr, '.1f')} dB "
            f"PSNR ({h.malicious_inversion_attack}): this arm does not stop a server that "
            "cheats."
        )
    elif h.malicious_reason:
        lines.append(f"Against a malicious server: {h.malicious_reason}.")
    scheme = load_scheme(arm.config)
    lines += scheme.narrative(numbers)
    lines.append(
        f"The released model still answers membership queries: the strongest outsider attack "
        f"({h.membership_attack}) reaches AUC {fmt(h.membership_auc)} with TPR "
        f"{fmt(h.membership_tpr_0_1)} at 0.1% FPR; black-box model inversion (MI-Face) "
        f"is recognized by a separate classifier for "
        f"{fmt(h.model_inversion_accuracy, '.0%')} of the classes."
    )
    lines += scheme.defense.narrative(numbers, baseline.headline.numbers(), baseline.name)
    if arm.name != baseline.name:
        lines.append(membership_effect(arm, baseline))
        for expected in scheme.defense.effects():
            attack = numbers.get(expected.attack_key) if expected.attack_key else None
            what = f"{expected.what} ({attack})" if attack else expected.what
            if expected.paired:
                lines.append(paired_effect(arm, expected.key, what))
            else:
                lines.append(effect(arm, baseline, expected.key, what))
    lines.append(
        f"Cost: {fmt(h.bytes_vs_plaintext, '.2f')}x the plaintext bytes per round, "
        f"{fmt(h.seconds_vs_plaintext, '.2f')}x its seconds per round."
    )
    return lines

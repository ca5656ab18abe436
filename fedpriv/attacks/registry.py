"""Every attack and every threat by name; which attacks apply to which threat is derived."""

from __future__ import annotations

from typing import Any

from fedpriv.attacks.results import Threat
from fedpriv.registry import Registry

# Each value is an :class:`fedpriv.attacks.base.Attack` subclass.
ATTACKS: Registry[Any] = Registry(
    "attack",
    {
        "ig": "fedpriv.attacks.inversion:InvertingGradients",
        "dlg": "fedpriv.attacks.inversion:DLG",
        "idlg": "fedpriv.attacks.inversion:IDLG",
        "loss": "fedpriv.attacks.membership_attacks:LossAttack",
        "confidence": "fedpriv.attacks.membership_attacks:ConfidenceAttack",
        "entropy": "fedpriv.attacks.membership_attacks:EntropyAttack",
        "label-only": "fedpriv.attacks.membership_attacks:LabelOnlyAttack",
        "shokri": "fedpriv.attacks.membership_attacks:ShokriAttack",
        "ml-leaks": "fedpriv.attacks.membership_attacks:MLLeaksAttack",
        "lira-offline": "fedpriv.attacks.membership_attacks:LiRAOffline",
        "lira-online": "fedpriv.attacks.membership_attacks:LiRAOnline",
        "rmia-offline": "fedpriv.attacks.membership_attacks:RMIAOffline",
        "rmia-online": "fedpriv.attacks.membership_attacks:RMIAOnline",
        "client-membership": "fedpriv.attacks.client_membership:ClientMembership",
        "mi-face": "fedpriv.attacks.mi_face:MIFace",
        "imprint": "fedpriv.attacks.imprint:Imprint",
    },
)
# Each value is a :class:`fedpriv.attacks.views.View` subclass.
VIEWS: Registry[Any] = Registry(
    "threat",
    {
        Threat.CURIOUS_SERVER: "fedpriv.attacks.views:ServerView",
        Threat.OUTSIDER: "fedpriv.attacks.views:OutsiderView",
        Threat.COLLUDING_CLIENT: "fedpriv.attacks.views:CoalitionView",
        Threat.MALICIOUS_SERVER: "fedpriv.attacks.views:MaliciousServerView",
    },
)


def attacks_for(threat: str) -> tuple[str, ...]:
    """The attacks that can apply to ``threat`` (what its view could ever provide)."""
    view = VIEWS.load(threat)
    return tuple(name for name in ATTACKS if ATTACKS.load(name).applies_to(view))

"""Every attack and every threat by name; which attacks apply to which threat is derived."""

from __future__ import annotations

import logging
from typing import Any

from fedpriv.attacks.results import Threat
from fedpriv.errors import ConfigError
from fedpriv.registry import Registry

# Each value is an :class:`fedpriv.attacks.base.Attack` subclass; other packages add theirs
# under the entry-point group ``fedpriv.attacks``, named as the class's ``name``.
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
    group="fedpriv.attacks",
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
    """The attacks that can apply to ``threat`` (what its view could ever provide).

    A plug-in that does not load is left out with a warning naming it (asked for by name,
    it is refused with the reason).
    """
    view = VIEWS.load(threat)
    applying = []
    for name in ATTACKS:
        try:
            attack = load_attack(name)
        except ConfigError as err:
            if ATTACKS.is_builtin(name):
                raise
            logging.getLogger("fedpriv").warning("attack plug-in left out: %s", err)
            continue
        if attack.applies_to(view):
            applying.append(name)
    return tuple(applying)


def load_attack(name: str) -> Any:
    """The :class:`~fedpriv.attacks.base.Attack` subclass registered as ``name``.

    Raises
    ------
    ConfigError
        If a plug-in is no ``Attack`` subclass, or is registered under another name than
        its own ``name`` (results are filed under that name).

    """
    from fedpriv.attacks.base import Attack

    attack = ATTACKS.load(name)
    if not (isinstance(attack, type) and issubclass(attack, Attack)):
        raise ConfigError(f"attack {name!r} is {attack!r}, not a fedpriv.attacks.base.Attack")
    if attack.name != name:
        raise ConfigError(
            f"attack {name!r} is {attack.__module__}.{attack.__qualname__}, named "
            f"{attack.name!r}: register it under its name (entry-point group fedpriv.attacks)"
        )
    return attack

"""Privacy attacks run on what each attacker really sees: curious server, outsider, colluder.

The names a new attack is written against (``docs/how-to/add-an-attack.md``); they are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpriv.exports import lazy

_PUBLIC = {
    "Attack": "fedpriv.attacks.base:Attack",
    "AttackContext": "fedpriv.attacks.context:AttackContext",
    "AttackResult": "fedpriv.attacks.results:AttackResult",
    "Family": "fedpriv.attacks.results:Family",
    "ReconstructionMetrics": "fedpriv.attacks.results:ReconstructionMetrics",
    "Status": "fedpriv.attacks.results:Status",
    "Capability": "fedpriv.attacks.views:Capability",
    "NotApplicable": "fedpriv.attacks.views:NotApplicable",
    "SightView": "fedpriv.attacks.views:SightView",
    "View": "fedpriv.attacks.views:View",
    "ATTACKS": "fedpriv.attacks.registry:ATTACKS",
    "VIEWS": "fedpriv.attacks.registry:VIEWS",
}
__getattr__, __dir__ = lazy(__name__, _PUBLIC)
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # what type checkers and IDEs see
    from fedpriv.attacks.base import Attack as Attack
    from fedpriv.attacks.context import AttackContext as AttackContext
    from fedpriv.attacks.registry import ATTACKS as ATTACKS
    from fedpriv.attacks.registry import VIEWS as VIEWS
    from fedpriv.attacks.results import AttackResult as AttackResult
    from fedpriv.attacks.results import Family as Family
    from fedpriv.attacks.results import ReconstructionMetrics as ReconstructionMetrics
    from fedpriv.attacks.results import Status as Status
    from fedpriv.attacks.views import Capability as Capability
    from fedpriv.attacks.views import NotApplicable as NotApplicable
    from fedpriv.attacks.views import SightView as SightView
    from fedpriv.attacks.views import View as View

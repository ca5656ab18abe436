"""The interface of an attack plug-in: what it needs, and how it runs on a view."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from fedpriv.attacks.context import AttackContext
from fedpriv.attacks.estimate import QUICK, Estimate
from fedpriv.attacks.results import AttackResult, Family
from fedpriv.attacks.views import Capability, View


class Attack(ABC):
    """One attack. Subclasses declare what they need; the runner derives where they apply.

    ``requirements`` are alternatives, best first: the attack runs with the first set of
    capabilities the view holds (MI-Face is white-box where the weights are visible, else
    black-box through queries). An attack whose every alternative needs something a threat
    can never hold does not apply to that threat at all.
    """

    name: ClassVar[str]
    family: ClassVar[Family]
    requirements: ClassVar[tuple[frozenset[Capability], ...]]
    # The settings the result depends on, as paths into ``SuiteSettings`` ("membership",
    # "membership.seed"): what decides whether a stored result can be reused.
    uses: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def applies_to(cls, view: type[View]) -> bool:
        """Whether some run could give this kind of view what the attack needs."""
        return any(needs <= view.possible for needs in cls.requirements)

    def choose(self, view: View) -> frozenset[Capability]:
        """The first alternative the view holds; else raise the first one's reason."""
        for needs in self.requirements:
            if all(view.missing(c) is None for c in needs):
                return needs
        possible = [n for n in self.requirements if n <= type(view).possible]
        view.require(possible[0] if possible else self.requirements[0])
        raise AssertionError("unreachable: require() raised")  # pragma: no cover

    @abstractmethod
    def run(self, context: AttackContext, view: View, needs: frozenset[Capability]) -> AttackResult:
        """Attack the run through ``view`` holding ``needs``; return the scored result."""

    def estimate(
        self, context: AttackContext, view: View, needs: frozenset[Capability]
    ) -> Estimate:
        """Seconds :meth:`run` will take with ``needs``, before it starts.

        Attacks that optimize or train time a few of their own steps on the run's model
        (:mod:`fedpriv.attacks.estimate`); the default counts the attack as quick.
        """
        return QUICK

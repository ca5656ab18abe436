"""Flower strategies of the schemes: plaintext FedAvg, CKKS FedAvg, and server-side DP noise.

Imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpriv.exports import lazy

_PUBLIC = {
    "CkksFedAvg": "fedpriv.strategies.ckks:CkksFedAvg",
}
__getattr__, __dir__ = lazy(__name__, _PUBLIC)
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # what type checkers and IDEs see
    from fedpriv.strategies.ckks import CkksFedAvg as CkksFedAvg

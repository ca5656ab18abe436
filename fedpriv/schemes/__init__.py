"""Aggregation schemes: plaintext FedAvg, CKKS, SecAgg+, each one class behind one interface.

The names a new scheme is written against (``docs/how-to/add-a-scheme.md``); they are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpriv.exports import lazy

_PUBLIC = {
    "AggregationScheme": "fedpriv.schemes.base:AggregationScheme",
    "ClientCodec": "fedpriv.schemes.base:ClientCodec",
    "Evaluation": "fedpriv.schemes.base:Evaluation",
    "Mod": "fedpriv.schemes.base:Mod",
    "Node": "fedpriv.schemes.base:Node",
    "load_scheme": "fedpriv.schemes.base:load_scheme",
    "Sight": "fedpriv.schemes.sight:Sight",
}
__getattr__, __dir__ = lazy(__name__, _PUBLIC)
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # what type checkers and IDEs see
    from fedpriv.schemes.base import AggregationScheme as AggregationScheme
    from fedpriv.schemes.base import ClientCodec as ClientCodec
    from fedpriv.schemes.base import Evaluation as Evaluation
    from fedpriv.schemes.base import Mod as Mod
    from fedpriv.schemes.base import Node as Node
    from fedpriv.schemes.base import load_scheme as load_scheme
    from fedpriv.schemes.sight import Sight as Sight

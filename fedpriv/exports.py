"""A package's public names, imported on first use (PEP 562), so importing it costs nothing.

``import fedpriv`` must stay cheap: every fedpriv process (a SuperNode, a forked ClientApp)
imports the package, and most need none of what it offers to users. A package lists its
public names with where each lives; :func:`lazy` gives it the ``__getattr__`` and
``__dir__`` that import them when first asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``names`` map to ``module:attr``.

    Raises
    ------
    AttributeError
        From ``__getattr__``, for a name that is not public (as Python's own would).

    """

    def getattr_(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def dir_() -> list[str]:
        return sorted({*names, *vars(sys.modules[package])})

    return getattr_, dir_

"""fedpriv's public names: they resolve, they cost nothing to import, the docs list them."""

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fedpriv

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["fedpriv", "fedpriv.attacks", "fedpriv.schemes", "fedpriv.strategies"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_where_it_says(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted({*dir(module)} & {*module.__all__})
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, name
        if name in module._PUBLIC:
            where, _, attribute = module._PUBLIC[name].partition(":")
            assert value is getattr(importlib.import_module(where), attribute)
    with pytest.raises(AttributeError, match="no attribute 'not_public'"):
        module.not_public  # noqa: B018


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checkers_see_the_same_names(package):
    """The ``TYPE_CHECKING`` imports (what IDEs and mypy read) match the lazy table."""
    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text())
    seen = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names:
                    seen[alias.asname] = f"{stmt.module}:{alias.name}"
    assert seen == module._PUBLIC


def test_importing_fedpriv_imports_neither_torch_nor_flower():
    code = (
        "import sys, fedpriv, fedpriv.attacks; print(sorted({'torch', 'flwr'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_is_typed_and_versioned():
    assert (Path(fedpriv.__file__).parent / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert fedpriv.__version__ == project["version"]

"""Models and datasets of other packages (entry points, dotted paths), fedpriv unchanged."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# A package as a user would install it: its module and its dist-info, whose entry points
# register a model, a dataset and a plug-in that cannot load.
PLUGIN = textwrap.dedent(
    '''
    """A test plug-in: a tiny model and separable data made here."""
    import numpy as np
    from torch import nn

    from fedpriv.attacks.base import Attack
    from fedpriv.attacks.results import AttackResult, Family, ReconstructionMetrics, Status
    from fedpriv.attacks.views import Capability
    from fedpriv.data.datasets import Dataset
    from fedpriv.defenses.base import NoDefense
    from fedpriv.schemes.plaintext import PlaintextScheme


    class TinyNet(nn.Sequential):
        def __init__(self, input_shape, num_classes):
            size = int(np.prod(input_shape))
            hidden = nn.Linear(size, 16)
            super().__init__(nn.Flatten(), hidden, nn.ReLU(), nn.Linear(16, num_classes))


    class BareNet(nn.Sequential):
        """Built with no arguments, as a Flower app's Net() is."""

        def __init__(self):
            super().__init__(nn.Flatten(), nn.Linear(16, 3))


    class UpdateNorm(Attack):
        """An attack plug-in: reads each client's update of round 1 (its size, as PSNR)."""

        name = "update-norm"
        family = Family.RECONSTRUCTION
        requirements = (frozenset({Capability.CLIENT_UPDATES}),)

        def run(self, context, view, needs):
            norms = [float(np.linalg.norm(u.after - u.before)) for u in view.updates(1)]
            metrics = ReconstructionMetrics(0.0, float(np.mean(norms)), 0.0, 0.0, 0.0)
            return AttackResult(
                self.name, context.threat, self.family, Status.SCORED, metrics=metrics
            )


    class Misnamed(UpdateNorm):
        name = "not-its-entry-point"


    class PlaintextTwin(PlaintextScheme):
        """An aggregation plug-in: fedpriv's plaintext FedAvg under a name of its own."""

        name = "plaintext-twin"


    class NoDefenseTwin(NoDefense):
        """A defense plug-in that changes nothing."""

        name = "none-twin"


    def tiny_data():
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, 600)
        x = rng.uniform(0.0, 0.2, (600, 1, 4, 4)).astype(np.float32)
        x[np.arange(600), 0, y, y] = 1.0  # the label written in the image: learnable
        return Dataset("tiny-data", x, y.astype(np.int64), 3)
    '''
)
ENTRY_POINTS = textwrap.dedent(
    """
    [fedpriv.models]
    tiny-net = fedpriv_testplugin:TinyNet
    broken-net = fedpriv_testplugin_missing:Net

    [fedpriv.datasets]
    tiny-data = fedpriv_testplugin:tiny_data

    [fedpriv.schemes]
    plaintext-twin = fedpriv_testplugin:PlaintextTwin

    [fedpriv.defenses]
    none-twin = fedpriv_testplugin:NoDefenseTwin

    [fedpriv.attacks]
    update-norm = fedpriv_testplugin:UpdateNorm
    misnamed = fedpriv_testplugin:Misnamed
    """
)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "fedpriv_testplugin.py").write_text(PLUGIN)
    info = root / "fedpriv_testplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fedpriv-testplugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def _fedpriv(plugin_path, *argv, cwd=None):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]),
    }
    code = "import sys; from fedpriv.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def test_registered_plugins_are_listed_by_run_help(plugin_path):
    help_text = " ".join(_fedpriv(plugin_path, "run", "--help").stdout.split())
    assert "tiny-net" in help_text and "tiny-data" in help_text
    assert "plaintext-twin" in help_text and "none-twin" in help_text
    assert "<package.module:attribute>" in help_text


def test_a_wrong_dotted_path_is_refused_in_one_line_naming_it(plugin_path, tmp_path):
    for model in ("fedpriv_testplugin:NoSuchNet", "no_such_package.task:Net"):
        result = _fedpriv(plugin_path, "run", "--model", model, "--out", str(tmp_path / "x"))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and model in lines[0], result.stderr
    assert not (tmp_path / "x").exists()


def test_a_plugin_that_fails_to_load_is_named_by_its_entry_point(plugin_path, tmp_path):
    result = _fedpriv(plugin_path, "run", "--model", "broken-net", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "entry point 'broken-net = fedpriv_testplugin_missing:Net'" in result.stderr
    assert "fedpriv-testplugin" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_plugin_model_trains_on_plugin_data(plugin_path, tmp_path):
    """A model, data, a scheme and a defense of another package, in one federation."""
    out = tmp_path / "run"
    result = _fedpriv(
        plugin_path, "run", "--model", "tiny-net", "--dataset", "tiny-data",
        "--aggregation", "plaintext-twin", "--defense", "none-twin",
        "--clients", "2", "--rounds", "3", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    accuracies = [r["accuracy"] for r in history["rounds"]]
    assert accuracies[-1] > 0.9, accuracies  # three classes: chance is a third
    # The attack plug-in is listed, runs where its needs are met, and is filed by its name.
    assert "update-norm" in " ".join(_fedpriv(plugin_path, "attack", "--help").stdout.split())
    argv = ["attack", str(out), "--threat", "curious-server", "--attacks", "update-norm"]
    result = _fedpriv(plugin_path, *argv)
    assert result.returncode == 0, result.stderr[-3000:]
    scored = json.loads((out / "attacks" / "curious-server" / "update-norm.json").read_text())
    assert scored["status"] == "scored" and scored["metrics"]["psnr"] > 0
    result = _fedpriv(plugin_path, *argv[:-1], "misnamed")
    assert result.returncode == 2 and "named 'not-its-entry-point'" in result.stderr


@pytest.fixture
def fresh_registries():
    """Registries that read the entry points of this test's ``sys.path``, and forget them
    after it (each caches what it read: later tests in the process must not see them)."""
    from fedpriv.attacks.registry import ATTACKS
    from fedpriv.registry import (
        DATASETS,
        DEFENSES,
        MODELS,
        PARTITIONERS,
        SCHEMES,
        all_entry_points,
    )

    registries = (MODELS, DATASETS, PARTITIONERS, SCHEMES, DEFENSES, ATTACKS)

    def forget() -> None:
        all_entry_points.cache_clear()
        for registry in registries:
            registry.__dict__.pop("_entries", None)
            registry._origins.clear()

    forget()
    yield
    forget()


def test_dotted_paths_and_entry_points_resolve_in_process(
    plugin_path, monkeypatch, fresh_registries
):
    """The registry's rules, without a subprocess: a dotted path is its own entry; a model
    that takes no arguments is built as a Flower app's ``Net()`` is."""
    from fedpriv.errors import ConfigError
    from fedpriv.models import build_model
    from fedpriv.registry import MODELS, is_dotted_path

    monkeypatch.syspath_prepend(str(plugin_path))
    assert is_dotted_path("fedpriv_testplugin:BareNet") and not is_dotted_path("mlp")
    assert not is_dotted_path("a b:c") and not is_dotted_path("module:")
    model = build_model("fedpriv_testplugin:BareNet", (1, 4, 4), 3, seed=0)
    assert sum(p.numel() for p in model.parameters()) == 16 * 3 + 3
    assert MODELS.entry("fedpriv_testplugin:BareNet").provides == frozenset()
    assert build_model("fedpriv.models.nets:MLP", (1, 8, 8), 10, seed=1) is not None
    with pytest.raises(ConfigError, match="not a torch module"):
        build_model("fedpriv_testplugin:tiny_data", (1, 4, 4), 3)

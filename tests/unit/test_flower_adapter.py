"""Flower's internals fedpriv uses, checked against the installed Flower."""

import inspect

import flwr
import numpy as np
from flwr.app import RecordDict

from fedpriv import flower_internals as flower


def test_installed_flower_is_the_version_the_adapter_was_written_for():
    assert flwr.__version__ == flower.FLOWER_VERSION


def test_the_private_simulation_entry_point_takes_what_the_adapter_passes():
    from flwr.simulation.run_simulation import _run_simulation

    parameters = inspect.signature(_run_simulation).parameters
    passed = {
        "num_supernodes",
        "exit_event",
        "client_app_attr",
        "server_app_attr",
        "backend_name",
        "backend_config",
        "server_app_context",
        "app_dir",
        "is_app",
        "verbose_logging",
    }
    assert passed <= set(parameters)


def test_recorddict_codecs_and_legacy_layouts_round_trip():
    content = flower.legacy_fit_reply([np.ones(3, np.float32)], 7, 0.25)
    data = flower.recorddict_to_bytes(content)
    assert flower.recorddict_size(content) == len(data)
    assert isinstance(flower.recorddict_from_bytes(data), RecordDict)
    evaluate = flower.legacy_evaluate_reply(0.5, 9, 0.75, 3)
    assert isinstance(evaluate, RecordDict)


def test_the_supernode_loop_sleeps_through_the_module_the_adapter_caps():
    """Flower 1.42's SuperNode sleeps 3 s between empty pulls via its module's ``time``."""
    import time

    from flwr.supernode import start_client_internal

    assert start_client_internal.time is time
    source = inspect.getsource(start_client_internal)
    assert "time.sleep(3)" in source and "time.sleep(0.5)" in source


def test_capped_sleep_waits_at_most_the_cap_and_forwards_the_rest():
    import time

    capped = flower._CappedSleep(time, idle=0.3, local=0.01)
    start = time.monotonic()
    capped.sleep(3)  # Flower's idle poll of the SuperLink: the idle cap
    idle = time.monotonic() - start
    start = time.monotonic()
    capped.sleep(0.5)  # its local checks for a reply: the local cap
    local = time.monotonic() - start
    assert 0.3 <= idle < 1.0 and local < 0.2
    assert capped.monotonic is time.monotonic and capped.time is time.time


def test_run_supernode_refuses_a_changed_loop(monkeypatch):
    import pytest
    from flwr.supernode import start_client_internal

    monkeypatch.setattr(start_client_internal, "time", object())
    with pytest.raises(RuntimeError, match="SuperNode loop changed"):
        flower.run_supernode(0.2)


def _record_kwargs(out: str, **kwargs) -> None:
    """A stand-in for Flower's ``run_clientapp`` in a forked child: it writes its arguments."""
    import json
    import os

    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"pid": os.getpid(), "kwargs": kwargs}, handle)


class _Inner:
    """Flower's executor, as far as ForkingExecutor delegates to it."""

    def __init__(self) -> None:
        self.launched: list[object] = []

    def launch(self, spec):
        self.launched.append(spec)
        return "inner"

    def reconcile(self) -> None: ...

    def close(self) -> None: ...


def _spec(task_type, **changes):
    from flwr.supercore.superexec.executor import ExecutionSpec

    fields = {
        "task_type": task_type,
        "runtime_api_address": "127.0.0.1:9",
        "token": "a-token",
        "insecure": True,
        "root_certificates_path": None,
        "runtime_dependency_install": False,
        "parent_pid": 4242,
        "suppress_output": False,
        "task_id": 1,
    }
    return ExecutionSpec(**{**fields, **changes})


def test_forking_executor_forks_clientapps_with_flowers_arguments(tmp_path):
    """A ClientApp task runs in a child forked from the warm process, with what
    ``flwr-clientapp`` would pass ``run_clientapp``; other tasks go to Flower's executor."""
    import functools
    import json
    import os
    import time

    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import LaunchResultStatus

    out = tmp_path / "child.json"
    inner = _Inner()
    executor = flower.ForkingExecutor(
        inner, preload=("numpy",), target=functools.partial(_record_kwargs, str(out))
    )
    result = executor.launch(_spec(TaskType.CLIENT_APP))
    assert result.status == LaunchResultStatus.ACCEPTED and inner.launched == []
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = json.loads(out.read_text())
    assert child["pid"] != os.getpid()
    assert child["kwargs"] == {
        "runtime_api_address": "127.0.0.1:9",
        "token": "a-token",
        "insecure": True,
        "certificates": None,
        "parent_pid": 4242,
        "runtime_dependency_install": False,
    }
    assert executor.launch(_spec(TaskType.SERVER_APP)) == "inner"
    assert executor.launch(_spec(TaskType.CLIENT_APP, suppress_output=True)) == "inner"
    deadline = time.monotonic() + 30
    while executor._children and time.monotonic() < deadline:
        executor.reconcile()  # the finished child is reaped
        time.sleep(0.1)
    assert executor._children == []
    executor.close()


def test_the_superexec_wraps_only_its_local_executor(monkeypatch):
    from flwr.supercore.constant import ExecutorType
    from flwr.supercore.superexec import run_superexec as module

    monkeypatch.setattr(module, "get_executor", lambda executor_type, *a, **k: _Inner())
    flower.install_forking_executor()
    assert isinstance(module.get_executor(ExecutorType.SUBPROCESS), flower.ForkingExecutor)
    monkeypatch.setenv(flower.FORK_ENV, "0")  # as Flower does, for the bench's comparison
    assert isinstance(module.get_executor(ExecutorType.SUBPROCESS), _Inner)


def test_quick_object_pulls_retry_within_a_fifth_of_a_second_for_as_long_as_flower_allows(
    monkeypatch,
):
    """Flower waits 1 s, then 2, 4, ... for an object that is not there yet; the processes
    fedpriv starts retry after 50 ms and at most every 200 ms, bounded by Flower's time limit."""
    import time

    from flwr.supercore.constant import PULL_INITIAL_BACKOFF
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

    assert PULL_INITIAL_BACKOFF == 1  # Flower's first wait, in seconds
    # Restored after the test (importing fedpriv's ServerApp quickens this process's pulls).
    for function in (
        inflatable_utils.pull_objects,
        inflatable_utils.pull_and_inflate_object_from_tree,
    ):
        monkeypatch.setattr(function, "__kwdefaults__", dict(function.__kwdefaults__))
    flower.quicken_object_pulls()
    defaults = inflatable_utils.pull_objects.__kwdefaults__
    assert (defaults["initial_backoff"], defaults["backoff_cap"]) == (0.05, 0.2)
    assert defaults["max_tries_per_object"] is None and defaults["max_time"] > 3600
    tries = {"n": 0}

    def pull(object_id: str) -> bytes:
        tries["n"] += 1
        if tries["n"] < 4:  # not there yet, three times
            raise ObjectUnavailableError(object_id)
        return b"content"

    start = time.monotonic()
    assert inflatable_utils.pull_objects(["a"], pull) == {"a": b"content"}
    assert time.monotonic() - start < 0.8  # Flower's schedule: 1 + 2 + 4 s


def test_an_installed_fab_is_not_unpacked_again(tmp_path, monkeypatch):
    """Flower unpacks and checks a whole FAB for every message, then keeps the app directory
    it finds for the FAB's hash; fedpriv returns that directory at once."""
    import flwr.cli.install as install
    from flwr.cli.build import build_fab_from_disk

    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "__init__.py").write_text("")
    (app / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1.0.0"\n\n'
        '[tool.flwr.app]\npublisher = "fedpriv"\n\n'
        '[tool.flwr.app.components]\nserverapp = "pkg:server"\nclientapp = "pkg:client"\n'
    )
    fab = build_fab_from_disk(app)
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))
    calls = []
    flower_install = install.install_from_fab

    def counted(*args, **kwargs):
        calls.append(args)
        return flower_install(*args, **kwargs)

    monkeypatch.setattr(install, "install_from_fab", counted)
    first = flower.install_fab_once(fab, skip_prompt=True)
    assert (first / "pkg" / "__init__.py").is_file() and (first / flower.INSTALLED_MARKER).is_file()
    assert flower.install_fab_once(fab, skip_prompt=True) == first
    assert len(calls) == 1  # the second message found it installed
    # A directory Flower had not finished (no marker) is installed by Flower again.
    (first / flower.INSTALLED_MARKER).unlink()
    assert flower.install_fab_once(fab, skip_prompt=True) == first and len(calls) == 2


def test_preloaded_fedpriv_serves_only_an_app_that_carries_the_same_sources(tmp_path):
    """A forked ClientApp finds fedpriv imported; that copy may serve the app only where the
    FAB carries no fedpriv or the very sources installed (compared once, then remembered)."""
    import shutil
    from pathlib import Path

    installed = Path(flower.__file__).parent
    bare = tmp_path / "bare"
    bare.mkdir()
    assert flower.runs_installed_fedpriv(bare)  # the app imports the installed fedpriv
    same = tmp_path / "same"
    shutil.copytree(installed, same / "fedpriv", ignore=shutil.ignore_patterns("__pycache__"))
    assert flower.runs_installed_fedpriv(same)
    assert (same / flower.SAME_CODE_MARKER).read_text() == "same"
    other = tmp_path / "other"
    shutil.copytree(same / "fedpriv", other / "fedpriv")
    (other / "fedpriv" / "errors.py").write_text("# another fedpriv\n")
    assert not flower.runs_installed_fedpriv(other)
    assert (other / flower.SAME_CODE_MARKER).read_text() == "differs"
    # The answer is kept: a later message of the same FAB does not compare again.
    (same / "fedpriv" / "errors.py").write_text("# edited after the first message\n")
    assert flower.runs_installed_fedpriv(same)


def test_forgetting_fedpriv_makes_the_next_import_read_it_again():
    import subprocess
    import sys

    code = (
        "import sys, fedpriv.flower_internals as f, fedpriv.apps.client; f.forget_fedpriv(); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'fedpriv')); "
        "import fedpriv.errors; print('fedpriv.errors' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_the_preloaded_modules_start_no_thread():
    """A forkserver must not hold threads when it forks: its preloads may start none."""
    import subprocess
    import sys

    code = (
        "import importlib, threading\n"
        f"for name in {list(flower.CLIENTAPP_PRELOAD)!r}: importlib.import_module(name)\n"
        "print(threading.active_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_ast_parsing_is_serialized_for_the_simulation_threads(monkeypatch):
    """CPython 3.11's AST constructor is not thread-safe (python/cpython#106905); the
    Simulation Engine's threads parse at once, so fedpriv lets one parse at a time."""
    import ast
    import threading
    import time

    from fedpriv.flower_internals import serialize_ast_parsing

    running, most = [0], [0]
    real = ast.parse

    def slow_parse(*args, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.02)
        running[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", slow_parse)
    serialize_ast_parsing()
    serialize_ast_parsing()  # idempotent: one lock, not two wrappers
    threads = [threading.Thread(target=ast.parse, args=("x = 1",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert isinstance(ast.parse("y = 2"), ast.Module)

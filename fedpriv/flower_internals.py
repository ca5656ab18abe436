"""The one place fedpriv reaches into Flower's internals (tested against the pinned version).

Everything here is used by Flower itself but is not part of its documented API: the
in-process Simulation Engine entry point that accepts a run config, the protobuf codecs of
a ``RecordDict``, the legacy fit/evaluate layouts that SecAgg+ still needs, the types of
Flower's ``Grid`` interface, the SuperNode's idle poll and the SuperExec's executor.
``tests/unit/test_flower_adapter.py`` checks each against the installed Flower, so an
upgrade fails there first.

One module: every reach into Flower's internals stays in one place, so that a Flower upgrade
has one file (and one test file) to check.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, RecordDict
from flwr.common import (
    Code,
    EvaluateRes,
    FitRes,
    NDArrays,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common import log as flower_log
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.compat.common import recorddict_compat as legacy
from flwr.proto.node_pb2 import NodeInfo
from flwr.proto.recorddict_pb2 import RecordDict as RecordDictProto
from flwr.supercore.run import Run

# The Flower release this module was written against (pyproject pins it).
FLOWER_VERSION = "1.42.0"
log = flower_log

__all__ = [
    "FLOWER_VERSION",
    "NodeInfo",
    "Run",
    "legacy_evaluate_parameters",
    "legacy_evaluate_reply",
    "legacy_fit_parameters",
    "legacy_fit_reply",
    "legacy_state_parameters",
    "log",
    "recorddict_from_bytes",
    "recorddict_to_bytes",
    "recorddict_size",
    "run_simulation_app",
]


# -- wire -----------------------------------------------------------------------------------
def recorddict_to_bytes(content: RecordDict) -> bytes:
    """A ``RecordDict`` serialized as Flower puts it on the wire."""
    data: bytes = recorddict_to_proto(content).SerializeToString()
    return data


def recorddict_size(content: RecordDict) -> int:
    """The number of bytes :func:`recorddict_to_bytes` would return."""
    size: int = recorddict_to_proto(content).ByteSize()
    return size


def recorddict_from_bytes(data: bytes) -> RecordDict:
    """Parse bytes written by :func:`recorddict_to_bytes` (protobuf errors propagate)."""
    proto = RecordDictProto()
    proto.ParseFromString(data)
    return recorddict_from_proto(proto)


# -- the Simulation Engine ------------------------------------------------------------------
_AST_LOCK = threading.Lock()


def serialize_ast_parsing() -> None:
    """Let one thread at a time run ``ast.parse`` in this process (idempotent).

    CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so
    two threads parsing at once can fail with ``SystemError: AST constructor recursion
    depth mismatch`` (python/cpython#106905). The Simulation Engine does exactly that: its
    ServerApp and ClientApp threads each validate their app reference with ``ast.parse``
    while the other may be importing (seen once in CI, failing a simulation at its start).
    """
    if getattr(ast.parse, "_fedpriv_serialized", False):
        return
    parse = ast.parse

    @functools.wraps(parse)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _AST_LOCK:
            return parse(*args, **kwargs)

    serialized._fedpriv_serialized = True  # type: ignore[attr-defined]
    ast.parse = serialized


def run_simulation_app(
    num_supernodes: int,
    server_app_attr: str,
    client_app_attr: str,
    app_dir: str,
    run_config: dict[str, Any],
    backend_config: dict[str, Any],
    verbose: bool,
) -> None:
    """Run a Flower App in-process on the Simulation Engine with ``run_config``.

    Flower's public ``run_simulation`` takes app objects and no run config; the private
    entry point it wraps takes the ServerApp's context, which carries the run config.
    """
    # Imported here: the Simulation Engine pulls in Ray, which deployments never need.
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    serialize_ast_parsing()

    server_context = Context(
        run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=run_config
    )
    _run_simulation(
        num_supernodes=num_supernodes,
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app_attr=client_app_attr,
        server_app_attr=server_app_attr,
        backend_name="ray",
        backend_config=backend_config,
        server_app_context=server_context,
        app_dir=app_dir,
        is_app=True,
        verbose_logging=verbose,
    )


# -- a ClientApp task's waits ----------------------------------------------------------------------
# Flower 1.42 retries an object that is not there yet after 1 s, doubling up to 10 s
# (``PULL_INITIAL_BACKOFF``). In a deployment that race is the rule, not the exception: a
# SuperExec launches a ClientApp as soon as the SuperNode has the message's metadata, before
# its content has arrived from the SuperLink, and the ServerApp asks for a reply's content as
# soon as the reply is announced. Each then sleeps a whole second (measured: 1.1 s of a 2.1 s
# ClientApp task), and doubling overshoots an object that arrives a moment later. The
# processes fedpriv starts retry every 50 ms, then at most every 200 ms, for as long as
# Flower's own limit on a pull (``PULL_MAX_TIME``) rather than for a number of tries.
OBJECT_PULL_BACKOFF_SECONDS = (0.05, 0.2)
# Written into an app's directory once Flower has installed its FAB there completely; and
# whether the fedpriv sources the FAB carries are those installed (``same``/``differs``).
INSTALLED_MARKER = ".fedpriv-installed"
SAME_CODE_MARKER = ".fedpriv-same-code"


def quicken_object_pulls(backoff: tuple[float, float] = OBJECT_PULL_BACKOFF_SECONDS) -> None:
    """Make this process's Flower retry a missing object within ``backoff`` seconds, not 1-10.

    ``backoff`` is the first wait and the longest; the retries are bounded by Flower's time
    limit on a pull instead of its count of tries (at 200 ms, 500 tries would end a pull of
    a large message on a slow link after 100 s).

    Raises
    ------
    RuntimeError
        If Flower's object pulls no longer take an ``initial_backoff``.

    """
    from flwr.supercore.inflatable import inflatable_utils

    for function in (
        inflatable_utils.pull_objects,
        inflatable_utils.pull_and_inflate_object_from_tree,
    ):
        defaults = function.__kwdefaults__
        names = ("initial_backoff", "backoff_cap", "max_tries_per_object", "max_time")
        if not defaults or not all(name in defaults for name in names):
            raise RuntimeError(f"Flower's object pulls changed (fedpriv expects {FLOWER_VERSION})")
        defaults["initial_backoff"], defaults["backoff_cap"] = backoff
        defaults["max_tries_per_object"] = None


def install_fab_once(
    fab_file: Path | bytes, install_dir: Path | None = None, skip_prompt: bool = False
) -> Path:
    """Flower's ``install_from_fab``, without unpacking a FAB whose app is installed already.

    Flower unpacks and hash-checks the whole FAB for every message (174 files for fedpriv's,
    0.3-0.5 s of a ClientApp task, measured) and then, with ``skip_prompt``, keeps the app
    directory it finds for that FAB's hash. This returns that directory at once when Flower
    finished installing it before (the marker it writes after Flower returns), and calls
    Flower otherwise.
    """
    import hashlib
    import io
    import tomllib
    import zipfile

    from flwr.cli.install import install_from_fab
    from flwr.common.config import get_metadata_from_config, get_project_dir

    if isinstance(fab_file, bytes) and install_dir is None and skip_prompt:
        try:
            with zipfile.ZipFile(io.BytesIO(fab_file)) as archive:
                config = tomllib.loads(archive.read("pyproject.toml").decode())
            fab_id, version = get_metadata_from_config(config)
            path = Path(get_project_dir(fab_id, version, hashlib.sha256(fab_file).hexdigest()))
            if (path / INSTALLED_MARKER).is_file():
                return path
        except (KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile):
            pass  # Flower's own install says what is wrong with it
    installed = install_from_fab(fab_file, install_dir, skip_prompt)
    (installed / INSTALLED_MARKER).touch()
    return installed


def runs_installed_fedpriv(app_dir: Path) -> bool:
    """Whether an installed app runs this fedpriv: its FAB carries none, or the same sources.

    Compared once per installed FAB (the answer is kept beside :data:`INSTALLED_MARKER`).
    """
    import hashlib

    kept = app_dir / SAME_CODE_MARKER
    if kept.is_file():
        return kept.read_text() == "same"

    def digest(root: Path) -> str:
        sources = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            sources.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        return sources.hexdigest()

    carried = app_dir / "fedpriv"
    same = not carried.is_dir() or digest(carried) == digest(Path(__file__).parent)
    kept.write_text("same" if same else "differs")
    return same


def forget_fedpriv() -> None:
    """Drop every imported fedpriv module, so that the next import reads an app's own copy."""
    for name in [n for n in sys.modules if n == "fedpriv" or n.startswith("fedpriv.")]:
        del sys.modules[name]


def _install_for_preloaded(
    fab_file: Path | bytes, install_dir: Path | None = None, skip_prompt: bool = False
) -> Path:
    """:func:`install_fab_once`; then fedpriv's preloaded modules go if the app's differ."""
    installed = install_fab_once(fab_file, install_dir, skip_prompt)
    if not runs_installed_fedpriv(installed):
        forget_fedpriv()
    return installed


def run_clientapp_quickly(**kwargs: Any) -> None:
    """Flower's ClientApp process body (``run_clientapp``) without its avoidable waits.

    Object pulls retry quickly (:func:`quicken_object_pulls`), an installed FAB is not
    unpacked again (:func:`install_fab_once`), and fedpriv's modules imported before the
    fork serve the app unless its FAB carries other sources of them
    (:func:`runs_installed_fedpriv`).
    """
    from flwr.supernode.runtime import run_clientapp as module

    if getattr(module, "install_from_fab", None) is None:
        raise RuntimeError(f"Flower's ClientApp runtime changed (fedpriv expects {FLOWER_VERSION})")
    quicken_object_pulls()
    vars(module)["install_from_fab"] = _install_for_preloaded
    module.run_clientapp(**kwargs)


# -- the SuperNode's poll ----------------------------------------------------------------------
# Flower 1.42's SuperNode loop sleeps 3 s after a pull from the SuperLink that found no message
# (a request to the SuperLink: capped at the idle poll the caller chooses), and 0.5 s between
# checks of its own in-memory state for the ClientApp's reply and for that reply's content
# (no request leaves the process: capped at this many seconds, since every exchange of a round
# waits for the slowest node's check).
LOCAL_WAIT_SECONDS = 0.02
# Flower's sleeps at least this long are its idle poll of the SuperLink; shorter ones, local waits.
_IDLE_SLEEP_SECONDS = 1.0


class _CappedSleep:
    """The ``time`` module, except that ``sleep`` waits at most ``idle`` or ``local`` seconds.

    A sleep of Flower's idle poll (1 s or more) waits at most ``idle``; a shorter one (its
    local waits) at most ``local``.
    """

    def __init__(self, module: Any, idle: float, local: float = LOCAL_WAIT_SECONDS) -> None:
        self._module = module
        self._idle = idle
        self._local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, capped as the class says."""
        cap = self._idle if seconds >= _IDLE_SLEEP_SECONDS else self._local
        self._module.sleep(min(seconds, cap))


def run_supernode(poll_seconds: float) -> int:
    """``flower-supernode`` (its command line from ``sys.argv``), polling every ``poll_seconds``.

    Flower 1.42's SuperNode sleeps a hard-coded 3 s whenever a pull from the SuperLink finds
    no message, and 0.5 s between checks for a ClientApp's reply and its content
    (``flwr.supernode.start_client_internal``). In a deployment every message waits on that
    poll twice a round (training, then evaluation: about 2.5 s each, measured), and every
    exchange on the slowest node's check for the reply, so the SuperNodes fedpriv starts cap
    the idle poll at ``poll_seconds`` and the local checks at :data:`LOCAL_WAIT_SECONDS`,
    and retry a missing object quickly (:func:`quicken_object_pulls`). Nothing else changes.
    """
    import time

    from flwr.supernode import start_client_internal
    from flwr.supernode.cli import flower_supernode

    if getattr(start_client_internal, "time", None) is not time:
        raise RuntimeError(f"Flower's SuperNode loop changed (fedpriv expects {FLOWER_VERSION})")
    vars(start_client_internal)["time"] = _CappedSleep(time, poll_seconds)
    quicken_object_pulls()
    flower_supernode()
    return 0


# -- the SuperExec's ClientApp processes ---------------------------------------------------------
# Modules a forked ClientApp finds imported: the libraries every fedpriv ClientApp imports
# before it answers a message (torch, Flower's ClientApp runtime and the HTTP transport its
# connection opens, TenSEAL, scikit-learn's bundled datasets: about 1.4 s of its own), and
# fedpriv's client side and schemes (about 0.1 s a message, measured, with the dataclasses
# they define). Never the app's own modules (``clients.app``: the FAB's copy runs), nor
# fedpriv's where the FAB carries other sources of it (:func:`runs_installed_fedpriv`), nor
# anything that starts a thread.
CLIENTAPP_PRELOAD = (
    "numpy",
    "torch",
    "sklearn.datasets",
    "tenseal.sealapi",
    "flwr.supernode.runtime.run_clientapp",
    "httpcore",
    "fedpriv.apps.client",
    "fedpriv.schemes.plaintext",
    "fedpriv.schemes.ckks",
    "fedpriv.schemes.secagg",
    "fedpriv.schemes.threshold.scheme",
)
# Set to 0, the SuperExec starts ClientApps as Flower does (the bench compares both).
FORK_ENV = "FEDPRIV_CLIENTAPP_FORK"


class ForkingExecutor:
    """Flower's SuperExec executor, with ClientApp tasks forked from a warm process.

    Flower 1.42 starts a fresh ``flwr-clientapp`` process for every message a SuperNode
    receives (``SubprocessExecutor.launch``): each one imports torch and Flower again, about
    two seconds, twice a round per client. This executor keeps a ``forkserver`` with those
    imports done (:data:`CLIENTAPP_PRELOAD`) and forks each ClientApp task from it, calling
    Flower's own ``run_clientapp`` with what ``flwr-clientapp`` would parse from its command
    line (:func:`run_clientapp_quickly`: without Flower's 1 s object retries, and without
    unpacking an installed FAB again); the child runs the app as before. Every other task, and a
    task whose output is to be suppressed, goes to Flower's executor unchanged.
    """

    def __init__(
        self,
        inner: Any,
        preload: tuple[str, ...] = CLIENTAPP_PRELOAD,
        target: Callable[..., None] | None = None,
    ) -> None:
        import multiprocessing

        self._inner = inner
        # What a forked task runs: Flower's ClientApp process body, with the keyword
        # arguments ``flwr-clientapp`` would pass it (without its avoidable waits).
        self._target = target or run_clientapp_quickly
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(list(preload))
        self._children: list[Any] = []
        # Start the server now, not on the first message: its imports are the wait saved.
        from multiprocessing import forkserver

        forkserver.ensure_running()

    def get_eligible_capacity(self, *args: Any, **kwargs: Any) -> Any:
        """Flower's executor's answer (a fork has no capacity gate either)."""
        return self._inner.get_eligible_capacity(*args, **kwargs)

    def wait_for_capacity(self, *args: Any, **kwargs: Any) -> None:
        """Flower's executor's wait."""
        self._inner.wait_for_capacity(*args, **kwargs)

    def launch(self, spec: Any) -> Any:
        """Fork a ClientApp task from the warm process; hand anything else to Flower's."""
        from flwr.supercore.constant import TaskType
        from flwr.supercore.superexec.executor import LaunchResult
        from flwr.supercore.tls import validate_and_resolve_root_certificates

        if spec.task_type != TaskType.CLIENT_APP or spec.suppress_output:
            return self._inner.launch(spec)
        child = self._context.Process(
            target=self._target,
            kwargs={
                "runtime_api_address": spec.runtime_api_address,
                "token": spec.token,
                "insecure": spec.insecure,
                "certificates": validate_and_resolve_root_certificates(
                    spec.root_certificates_path, spec.insecure
                ),
                "parent_pid": spec.parent_pid,
                "runtime_dependency_install": spec.runtime_dependency_install,
            },
            daemon=False,
        )
        child.start()
        self._children.append(child)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Reap the ClientApp processes that have finished; then Flower's upkeep."""
        self._children = [child for child in self._children if child.is_alive()]
        self._inner.reconcile()

    def close(self) -> None:
        """Flower's executor's cleanup (running ClientApps finish their message)."""
        self._inner.close()


def install_forking_executor() -> None:
    """Make Flower's SuperExec wrap its local executor in :class:`ForkingExecutor`.

    Flower's SuperExec takes its executor from ``get_executor``; the ``subprocess`` one is
    wrapped (unless ``FEDPRIV_CLIENTAPP_FORK=0``). Nothing else changes.
    """
    from flwr.supercore.constant import ExecutorType
    from flwr.supercore.superexec import run_superexec as module

    flower_get_executor = getattr(module, "get_executor", None)
    if flower_get_executor is None or not hasattr(module, "run_superexec"):
        raise RuntimeError(f"Flower's SuperExec changed (fedpriv expects {FLOWER_VERSION})")

    def get_executor(executor_type: Any, *args: Any, **kwargs: Any) -> Any:
        executor = flower_get_executor(executor_type, *args, **kwargs)
        if executor_type == ExecutorType.SUBPROCESS and os.environ.get(FORK_ENV, "1") != "0":
            return ForkingExecutor(executor)
        return executor

    vars(module)["get_executor"] = get_executor


def run_superexec() -> int:
    """``flower-superexec`` (its command line from ``sys.argv``) with ClientApps forked warm."""
    from flwr.supercore.cli.flower_superexec import flower_superexec

    install_forking_executor()
    flower_superexec()
    return 0


# -- the legacy layouts SecAgg+ needs -------------------------------------------------------
def legacy_fit_parameters(content: RecordDict) -> tuple[NDArrays, dict[str, Any]]:
    """The parameters and config of a legacy ``FitIns`` message."""
    fit_ins = legacy.recorddict_to_fitins(content, keep_input=True)
    return parameters_to_ndarrays(fit_ins.parameters), dict(fit_ins.config)


def legacy_replace_fit_parameters(content: RecordDict, arrays: NDArrays) -> RecordDict:
    """``content`` with the parameters of its legacy ``FitIns`` replaced (other records kept)."""
    parameters = ndarrays_to_parameters(arrays)
    content["fitins.parameters"] = legacy.parameters_to_arrayrecord(parameters, keep_input=True)
    return content


def legacy_evaluate_parameters(content: RecordDict) -> NDArrays:
    """The parameters of a legacy ``EvaluateIns`` message."""
    evaluate_ins = legacy.recorddict_to_evaluateins(content, keep_input=True)
    return parameters_to_ndarrays(evaluate_ins.parameters)


def legacy_state_parameters(state: RecordDict) -> NDArrays:
    """The global parameters a legacy workflow keeps in its context state."""
    parameters = legacy.arrayrecord_to_parameters(
        state.array_records["parameters"], keep_input=True
    )
    return parameters_to_ndarrays(parameters)


def legacy_fit_reply(arrays: list[np.ndarray], num_examples: int, train_loss: float) -> RecordDict:
    """A legacy ``FitRes`` (what ``secaggplus_mod`` reads from the ClientApp)."""
    fit_res = FitRes(
        status=Status(Code.OK, ""),
        parameters=ndarrays_to_parameters(arrays),
        num_examples=num_examples,
        metrics={"train-loss": train_loss},
    )
    return legacy.fitres_to_recorddict(fit_res, keep_input=False)


def legacy_evaluate_reply(
    loss: float, num_examples: int, accuracy: float, partition_id: int
) -> RecordDict:
    """A legacy ``EvaluateRes`` (the partition id, as every scheme's clients report it)."""
    metrics: dict[str, bool | bytes | float | int | str] = {
        "accuracy": accuracy,
        "partition-id": partition_id,
    }
    res = EvaluateRes(Status(Code.OK, ""), loss, num_examples, metrics)
    return legacy.evaluateres_to_recorddict(res)

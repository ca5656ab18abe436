"""Flower's internals fedpriv uses, checked against the installed Flower."""

import inspect

import flwr
import numpy as np
from flwr.app import RecordDict

from fedpriv import flower


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

    capped = flower._CappedSleep(time, 0.05)
    start = time.monotonic()
    capped.sleep(3)
    assert time.monotonic() - start < 1.0
    assert capped.monotonic is time.monotonic and capped.time is time.time


def test_run_supernode_refuses_a_changed_loop(monkeypatch):
    import pytest
    from flwr.supernode import start_client_internal

    monkeypatch.setattr(start_client_internal, "time", object())
    with pytest.raises(RuntimeError, match="SuperNode loop changed"):
        flower.run_supernode(0.2)

"""Helpers the tests share: recipes, log scanning, process lookups, Flower contexts."""

from __future__ import annotations

from pathlib import Path

from fedpriv.config import RunConfig

# One full-batch SGD step per round (FedSGD): float32 training cannot amplify the rounding
# differences between the plaintext and ckks arms into a different trajectory, which many
# mini-batch steps occasionally do (README, "How exact is ckks?").
EQUIVALENCE = {"learning_rate": 0.5, "momentum": 0.0, "local_epochs": 1, "batch_size": 512}


def secret_fragments(client_ctx: Path, count: int = 24) -> list[str]:
    """Text forms (raw, hex, base64) of 16-byte windows of a secret-key context file."""
    import base64

    data = client_ctx.read_bytes()
    step = max(1, (len(data) - 64) // count)
    fragments = []
    for offset in range(48, len(data) - 16, step):
        window = data[offset : offset + 16]
        fragments += [window.hex(), base64.b64encode(window).decode()[:20]]
        fragments.append(window.decode("latin-1"))
    return fragments


def parameter_fragments(model_file: Path, count: int = 200) -> list[str]:
    """Text forms of a released model's parameter values, as a log line would print them."""
    import numpy as np
    import torch

    state = torch.load(model_file)
    values = np.concatenate([v.numpy().ravel() for v in state.values()])
    chosen = values[np.abs(values) > 1e-3][:count]
    fragments = []
    for value in chosen:
        fragments += [repr(float(value))[:12], str(np.float32(value))]
    return fragments


def leaks(text: str, fragments: list[str]) -> list[str]:
    """The fragments that occur in ``text``."""
    return [f for f in fragments if len(f) >= 8 and f in text]


def pids_with_cmdline(*markers: str) -> list[int]:
    """PIDs of live processes whose command line holds every one of ``markers``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if all(marker in cmdline for marker in markers):
                pids.append(int(proc.name))
    return pids


def client_context(config: RunConfig, partition_id: int = 0):
    """The Flower Context a ClientApp of ``partition_id`` receives under ``config``."""
    from flwr.app import Context, RecordDict

    return Context(
        run_id=1,
        node_id=partition_id + 1,
        node_config={"partition-id": partition_id, "num-partitions": config.num_clients},
        state=RecordDict(),
        run_config=config.to_flower(),
    )

"""Helpers the tests share: recipes, log scanning, process lookups, Flower contexts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict

from fedpriv.config import RunConfig
from fedpriv.federation.recording import ROSTER, ROSTER_MESSAGE

# One full-batch SGD step per round (FedSGD): float32 training cannot amplify the rounding
# differences between the plaintext and ckks arms into a different trajectory, which many
# mini-batch steps occasionally do (docs/explanation/ckks.md, "Precision and exactness").
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


class FakeGrid:
    """A Flower ``Grid`` stand-in: ``nodes`` connected, each reply made by ``answer(message)``.

    Message ids are assigned on push as Flower's in-memory grid does, so replies find their
    requests; a reply of ``None`` never arrives. The server's roster query is answered as
    fedpriv's ClientApp does: node ``nodes[i]`` holds partition ``i``.
    """

    def __init__(self, nodes, answer) -> None:
        self.nodes, self.answer = list(nodes), answer
        self._replies: dict = {}
        self._count = 0

    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        ids = []
        for message in messages:
            self._count += 1
            message.metadata.__dict__["_message_id"] = f"message-{self._count}"
            if message.metadata.message_type == ROSTER_MESSAGE:
                partition = self.nodes.index(message.metadata.dst_node_id)
                content = RecordDict({ROSTER: ConfigRecord({"partition-id": partition})})
                reply = Message(content, reply_to=message)
            else:
                reply = self.answer(message)
            if reply is not None:
                self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages, *, timeout=None):
        """As Flower's grid: push, then pull what came back (here at once)."""
        return self.pull_messages(self.push_messages(messages))


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command) of every live process below ``root``."""
    parents, names = {}, {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            names[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and "/proc" not in names.get(pid, ""):
                found.append((pid, names.get(pid, "")))
                frontier.append(pid)
    return found


def flwr_run(
    app: Path, home: Path, federation: str, run_config: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``flwr run APP local`` on the Simulation Engine, under its own ``$FLWR_HOME``.

    ``flwr run`` starts ``flower-superlink`` from ``PATH``: the one beside this interpreter.
    The run's exit status is checked; its output is returned.
    """
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": path}
    flwr = Path(sys.executable).with_name("flwr")
    proc = subprocess.run(
        [str(flwr), "run", str(app), "local", "--federation-config", federation]
        + ["--run-config", run_config, "--stream"],
        cwd=cwd,
        env=env,
        timeout=400,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# Counts printed as ratios ("7.000 clients"), and singular counts with a plural noun.
WRONG_NUMBERS = (
    r"\b\d+\.0+ (clients?|rounds?|records?|colluders?)\b"
    r"|\b1 (clients|rounds|records|training records|colluders|shadow models)\b"
)

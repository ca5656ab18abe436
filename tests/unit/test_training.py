"""Local training: fedpriv's SGD is torch's, and a fresh process trains without TorchDynamo."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from fedpriv.training import MomentumSGD


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_momentum_sgd_is_torch_sgd_bit_for_bit(momentum):
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    theirs = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    theirs.load_state_dict(ours.state_dict())
    sgd = MomentumSGD(list(ours.parameters()), 0.05, momentum)
    reference = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=momentum)
    for step in range(20):
        x = torch.randn(8, 16, generator=torch.Generator().manual_seed(step))
        y = torch.arange(8) % 4
        for model, optimizer in ((ours, sgd), (theirs, reference)):
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_fresh_client_process_imports_neither_dynamo_nor_sklearn(tmp_path):
    """What a Deployment-Engine message costs: no TorchDynamo, no scikit-learn (data comes
    from the disk cache once a process has built it)."""
    script = """
import sys
from fedpriv.config import RunConfig
from fedpriv.task import client_data, new_model
from fedpriv.training import train
config = RunConfig()
data = client_data(config, 0)
train(new_model(config), data.x_train, data.y_train, 1, 32, 0.1, 0.9)
print(sorted(m for m in ("torch._dynamo", "sklearn") if m in sys.modules))
"""
    env = {"FEDPRIV_CACHE_DIR": str(tmp_path), "PATH": ""}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "['sklearn']"  # the first process builds the cache
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "[]"

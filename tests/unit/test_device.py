"""The ``device`` run-config key: its forms, how it resolves, and refusals before any write."""

import numpy as np
import pytest
import torch

from fedpriv import device as devices
from fedpriv.cli import main
from fedpriv.config import RunConfig
from fedpriv.device import check_device_name, simulation_gpu_share, torch_device
from fedpriv.errors import ConfigError
from fedpriv.models import build_model, model_state
from fedpriv.training import evaluate, model_logits, train

needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA"
)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_forms_are_accepted(name):
    assert check_device_name(name) == name
    assert RunConfig(device=name).device == name


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_other_device_names_are_refused_naming_the_forms(name):
    with pytest.raises(ConfigError, match=r"device must be one of auto, cpu, cuda, cuda:<n>"):
        RunConfig(device=name)


def test_client_num_gpus_is_a_share_or_automatic():
    assert RunConfig(client_num_gpus=0.25).client_num_gpus == 0.25
    with pytest.raises(ConfigError, match="client-num-gpus must be >= 0, or -1"):
        RunConfig(client_num_gpus=-0.5)


@needs_no_cuda
def test_without_cuda_auto_is_the_cpu_and_cuda_is_refused_in_one_line():
    assert torch_device("auto") == torch.device("cpu")
    assert torch_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError) as err:
            torch_device(name)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"device {name}: this machine cannot run it")
        assert message.endswith("use device auto or cpu")


def test_auto_and_gpu_shares_follow_the_visible_devices(monkeypatch):
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 2)
    assert torch_device("auto") == torch.device("cuda", 0)
    assert torch_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"device cuda:2: .*it sees 2 CUDA device\(s\)"):
        torch_device("cuda:2")
    assert simulation_gpu_share(-1.0, "auto", cpus=16) == 2 / 16
    assert simulation_gpu_share(-1.0, "auto", cpus=1) == 1.0
    assert simulation_gpu_share(-1.0, "cpu", cpus=16) == 0.0
    assert simulation_gpu_share(0.5, "auto", cpus=16) == 0.5


@needs_no_cuda
def test_auto_gives_no_gpu_share_on_a_cpu_machine():
    assert simulation_gpu_share(-1.0, "auto", cpus=2) == 0.0


@needs_no_cuda
@pytest.mark.parametrize("command", ["run", "deploy local"])
def test_a_cuda_run_on_a_cpu_machine_is_refused_before_anything_is_written(
    command, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main([*command.split(), "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "device cuda: this machine cannot run it" in err
    assert not out.exists()


@needs_no_cuda
def test_a_cuda_comparison_on_a_cpu_machine_is_refused_before_anything_is_written(tmp_path, capsys):
    spec = tmp_path / "compare.toml"
    spec.write_text(
        '[run]\ndevice = "cuda"\nnum-server-rounds = 1\n\n'
        '[arms.plaintext]\naggregation = "plaintext"\n'
    )
    out = tmp_path / "compare"
    assert main(["compare", str(spec), "--out", str(out)]) == 2
    assert "device cuda: this machine cannot run it" in capsys.readouterr().err
    assert not out.exists()


def test_training_on_an_explicit_device_equals_the_default():
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    a, b = build_model("mlp", (1, 8, 8), 10, seed=1), build_model("mlp", (1, 8, 8), 10, seed=1)
    loss_a = train(a, x, y, 2, 8, 0.05, 0.9, seed=3)
    loss_b = train(b, x, y, 2, 8, 0.05, 0.9, seed=3, device=torch_device("cpu"))
    assert loss_a == loss_b
    assert all(np.array_equal(v, model_state(b)[k]) for k, v in model_state(a).items())


def test_evaluation_and_logits_are_batched_without_changing_results():
    rng = np.random.default_rng(1)
    x = rng.random((50, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 50)
    model = build_model("mlp", (1, 8, 8), 10, seed=2)
    whole = model_logits(model, x)
    assert torch.allclose(model_logits(model, x, batch_size=7), whole, atol=1e-6)
    loss, accuracy = evaluate(model, x, y, batch_size=7)
    expected = torch.nn.functional.cross_entropy(whole, torch.from_numpy(y))
    assert loss == pytest.approx(float(expected), rel=1e-6)
    assert accuracy == float((whole.argmax(1).numpy() == y).mean())
    assert model_logits(model, x[:0]).shape == (0,)

"""ResNet-18 (11M parameters) on a CIFAR-shaped local dataset: ckks equals plaintext (slow)."""

import numpy as np
import pytest

from fedpriv.config import RunConfig
from fedpriv.data.datasets import load_dataset
from fedpriv.release import round_models
from fedpriv.rundir import RunDirectory
from fedpriv.simulation import run_simulation
from fedpriv.task import num_parameters

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cifar_shaped(tmp_path_factory):
    """A CIFAR-10-shaped saved dataset (60 RGB 32x32 images), recorded as ``cifar10``."""
    path = tmp_path_factory.mktemp("data") / "cifar10"
    rng = np.random.default_rng(0)
    labels = [i % 10 for i in range(60)]
    # Class-dependent colour so the model has something to learn.
    pixels = rng.integers(0, 128, size=(60, 32, 32, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        pixels[index, :, :, label % 3] += np.uint8(12 * label)
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=[f"c{i}" for i in range(10)])}
    )
    data = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in pixels], "label": labels}, features=features
    )
    data.info.dataset_name = "cifar10"
    data.save_to_disk(str(path))
    return f"hf:{path}"


def test_resnet18_under_ckks_equals_plaintext_round_by_round(cifar_shaped, tmp_path):
    # Round 1 differs by CKKS's error and float32 rounding (3e-7 at most, measured). Training
    # turns a start that differs by that much in each of 11M values into a model that differs
    # by up to 6e-4 at learning rate 0.01 (1e-4 under plaintext FedAvg's own float32
    # rounding, measured): the perturbation's norm over 11M values is ~3e-4. At 0.001 with
    # GroupNorm (the CIFAR experiment's model) it stays near 3e-6: what is left is encryption.
    dataset = load_dataset(cifar_shaped)
    assert dataset.input_shape == (3, 32, 32)
    assert dataset.normalization is not None and dataset.normalization.mean[0] == 0.4914
    base = RunConfig(
        dataset=cifar_shaped,
        model="resnet18-gn",
        num_clients=4,
        num_server_rounds=2,
        local_epochs=1,
        batch_size=8,
        learning_rate=0.001,
        momentum=0.0,
        device="cpu",
    )
    assert num_parameters(base) > 11_000_000
    runs = {}
    for aggregation in ("plaintext", "ckks"):
        config = base.replace(aggregation=aggregation, out_dir=str(tmp_path / aggregation))
        runs[aggregation] = run_simulation(config)
        history = RunDirectory(runs[aggregation]).read_history()
        assert [len(r.clients) for r in history] == [4, 4], aggregation
    plain, encrypted = round_models(runs["plaintext"]), round_models(runs["ckks"])
    assert len(plain) == len(encrypted) == 2
    for round_plain, round_ckks in zip(plain, encrypted, strict=True):
        assert round_plain.size == num_parameters(base)
        assert np.max(np.abs(round_plain - round_ckks)) < 1e-5
    # The model changed: the comparison is not between two copies of the seed's model.
    assert np.max(np.abs(plain[1] - plain[0])) > 1e-4

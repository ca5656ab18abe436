"""hf:<name> datasets: saved folders, ImageFolder trees, known hub sets and normalization.

Every dataset here is built in tmp_path; nothing is downloaded (the hub is monkeypatched).
"""

import copy
import pickle

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")

from fedpriv.data.datasets import Dataset, Normalization, load_dataset  # noqa: E402
from fedpriv.data.hub import load_hub_dataset  # noqa: E402
from fedpriv.data.hubsets import HUB_SETS, known_hub_set, saved_hub_set  # noqa: E402
from fedpriv.errors import ConfigError  # noqa: E402
from fedpriv.models import Normalize, build_model, input_normalization  # noqa: E402

CIFAR10 = known_hub_set("uoft-cs/cifar10")


@pytest.fixture(autouse=True)
def _private_hf_cache(tmp_path, monkeypatch):
    """ImageFolder loads write Arrow files to the datasets cache: keep them in tmp_path."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _pixels(n, seed=0, shape=(32, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _cifar_like(n, seed=0, dataset_name=None):
    """A CIFAR-shaped datasets.Dataset: columns img (PIL RGB 32x32) and label (ClassLabel)."""
    pixels = _pixels(n, seed)
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=[f"c{i}" for i in range(10)])}
    )
    data = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in pixels], "label": [i % 10 for i in range(n)]},
        features=features,
    )
    data.info.dataset_name = dataset_name
    return data, pixels


def _save_cifar_like(path, n=24, dataset_name=None):
    train, pixels = _cifar_like(n, 0, dataset_name)
    test, _ = _cifar_like(6, 1, dataset_name)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(path))
    return pixels


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _stats(x):
    x = x.astype(np.float64)
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


# -- saved folders ------------------------------------------------------------------------
def test_a_saved_cifar_shaped_folder_loads_as_float_images(tmp_path):
    pixels = _save_cifar_like(tmp_path / "c")
    data = load_hub_dataset(str(tmp_path / "c"))
    assert data.x.shape == (24, 3, 32, 32) and data.x.dtype == np.float32
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    np.testing.assert_array_equal(data.x, pixels.transpose(0, 3, 1, 2) / np.float32(255.0))
    assert data.y.dtype == np.int64 and list(data.y[:12]) == [*range(10), 0, 1]
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32)


def test_an_unknown_saved_folder_gets_the_statistics_of_its_images(tmp_path):
    _save_cifar_like(tmp_path / "c")
    data = load_hub_dataset(str(tmp_path / "c"))
    mean, std = _stats(data.x)
    assert data.normalization is not None and data.normalization.channels == 3
    np.testing.assert_allclose(data.normalization.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(data.normalization.std, std, rtol=1e-9)
    # Deterministic: the same folder gives the same statistics.
    assert load_hub_dataset(str(tmp_path / "c")).normalization == data.normalization


def test_a_folder_saved_from_a_known_hub_set_gets_its_published_statistics(tmp_path):
    # What the hub records for uoft-cs/cifar10: dataset_name "cifar10".
    _save_cifar_like(tmp_path / "c", dataset_name="cifar10")
    data = load_hub_dataset(str(tmp_path / "c"))
    assert data.normalization == CIFAR10.normalization
    assert data.normalization.mean == (0.4914, 0.4822, 0.4465)


def test_a_missing_split_names_the_splits_there_are(tmp_path):
    test, _ = _cifar_like(4)
    datasets.DatasetDict({"test": test}).save_to_disk(str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="has no split 'train'; it has test"):
        load_hub_dataset(str(tmp_path / "c"))


def test_a_single_saved_dataset_needs_no_split(tmp_path):
    data, _ = _cifar_like(5)
    data.save_to_disk(str(tmp_path / "one"))
    assert load_hub_dataset(str(tmp_path / "one")).x.shape == (5, 3, 32, 32)


def test_labels_outside_the_classes_are_refused(tmp_path):
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=2)}
    )
    data = datasets.Dataset.from_dict(
        {"img": [Image.fromarray(p) for p in _pixels(3)], "label": [0, 1, -1]},
        features=features,
    )
    data.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ConfigError, match=r"must lie in 0\.\.1, found -1\.\.1"):
        load_hub_dataset(str(tmp_path / "bad"))


def test_a_folder_that_is_no_dataset_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(ConfigError, match="neither a folder written by save_to_disk"):
        load_hub_dataset(str(tmp_path / "notes"))


# -- ImageFolder trees --------------------------------------------------------------------
def test_an_image_folder_tree_loads_with_labels_from_folder_names(tmp_path):
    root = tmp_path / "tree"
    pixels = _pixels(6)
    for split in ("train", "test"):
        for i, label in enumerate(("cat", "dog", "cat", "dog", "cat", "dog")):
            _write_png(root / split / label / f"{i}.png", pixels[i])
    data = load_hub_dataset(str(root))
    assert data.x.shape == (6, 3, 32, 32) and data.num_classes == 2
    assert sorted(np.bincount(data.y).tolist()) == [3, 3]
    # Each image comes back with the label of its folder (cat = 0, dog = 1).
    for image, label in zip(data.x, data.y, strict=True):
        index = next(
            i
            for i in range(6)
            if np.array_equal(image, pixels[i].transpose(2, 0, 1) / np.float32(255.0))
        )
        assert label == index % 2
    assert load_hub_dataset(str(root), split="test").x.shape == (6, 3, 32, 32)


def test_an_image_folder_without_splits_is_the_train_split(tmp_path):
    for i, label in enumerate(("a", "b", "c")):
        _write_png(tmp_path / "tree" / label / "x.png", _pixels(1, i, (28, 28))[0])
    data = load_hub_dataset(str(tmp_path / "tree"))
    assert data.x.shape == (3, 1, 28, 28) and data.num_classes == 3
    assert data.normalization is not None and data.normalization.channels == 1


def test_a_grayscale_image_in_a_colour_set_is_converted_to_rgb(tmp_path):
    root = tmp_path / "tree"
    gray = _pixels(1, 5, (32, 32))[0]
    _write_png(root / "a" / "0.png", gray)  # mode L, read first
    _write_png(root / "b" / "1.png", _pixels(1, 6)[0])  # RGB
    rgba = np.concatenate([_pixels(1, 7)[0], np.full((32, 32, 1), 255, np.uint8)], axis=2)
    _write_png(root / "b" / "2.png", rgba)  # RGBA: its alpha is dropped
    data = load_hub_dataset(str(root))
    assert data.x.shape == (3, 3, 32, 32)
    first = data.x[np.flatnonzero(data.y == 0)[0]]
    for channel in first:
        np.testing.assert_array_equal(channel, gray / np.float32(255.0))


def test_images_of_different_sizes_are_refused_naming_the_sizes(tmp_path):
    root = tmp_path / "tree"
    _write_png(root / "a" / "0.png", _pixels(1, 0)[0])
    _write_png(root / "a" / "1.png", _pixels(1, 1)[0])
    _write_png(root / "b" / "2.png", _pixels(1, 2, (28, 28, 3))[0])
    with pytest.raises(
        ConfigError, match=r"different sizes.*32x32 \(2 images\), 28x28 \(1 image\)"
    ):
        load_hub_dataset(str(root))


def test_an_image_folder_without_class_folders_is_refused(tmp_path):
    _write_png(tmp_path / "flat" / "0.png", _pixels(1)[0])
    _write_png(tmp_path / "flat" / "1.png", _pixels(1, 1)[0])
    with pytest.raises(ConfigError, match="gives no labels: put the images in class-named"):
        load_hub_dataset(str(tmp_path / "flat"))


def test_an_image_folder_with_only_a_test_split_names_it(tmp_path):
    _write_png(tmp_path / "tree" / "test" / "a" / "0.png", _pixels(1)[0])
    _write_png(tmp_path / "tree" / "test" / "b" / "1.png", _pixels(1, 1)[0])
    with pytest.raises(ConfigError, match="has no split 'train'; it has test"):
        load_hub_dataset(str(tmp_path / "tree"))


# -- hub ids, aliases and the table ---------------------------------------------------------
def test_the_table_knows_the_ids_and_their_old_aliases():
    assert known_hub_set("cifar10") is CIFAR10 and known_hub_set("UOFT-CS/CIFAR10") is CIFAR10
    assert known_hub_set("cifar100").label == "fine_label"
    assert known_hub_set("fashion_mnist").hub_id == "zalando-datasets/fashion_mnist"
    assert known_hub_set("mnist").normalization == Normalization((0.1307,), (0.3081,))
    assert known_hub_set("someone/cifar10") is None and known_hub_set("imagenet") is None
    assert saved_hub_set(("cifar10", "parquet")) is CIFAR10
    assert saved_hub_set((None, "cifar10")) is CIFAR10
    assert saved_hub_set((None, "parquet")) is None and saved_hub_set(("my_data", None)) is None
    channels = {"cifar10": 3, "cifar100": 3, "fashion_mnist": 1, "mnist": 1}
    for entry in HUB_SETS:
        short = entry.hub_id.rsplit("/", 1)[-1]
        if entry.normalization is not None:
            assert entry.normalization.channels == channels[short]
        assert entry.transpose == short.startswith("emnist")


def _fake_hub(monkeypatch, data):
    asked = []

    def load(name, *args, **kwargs):
        asked.append(name)
        return data

    monkeypatch.setattr(datasets, "load_dataset", load)
    return asked


def test_an_alias_loads_the_hub_id_with_the_published_statistics(monkeypatch):
    train, pixels = _cifar_like(8)
    asked = _fake_hub(monkeypatch, datasets.DatasetDict({"train": train}))
    data = load_hub_dataset("cifar10")
    assert asked == ["uoft-cs/cifar10"] and data.name == "hf:cifar10"
    assert data.normalization == CIFAR10.normalization
    np.testing.assert_array_equal(data.x, pixels.transpose(0, 3, 1, 2) / np.float32(255.0))


def test_emnist_images_are_transposed_back(monkeypatch):
    # An asymmetric image: row 0 lit. Stored transposed, it comes back with column 0 lit.
    stored = np.zeros((28, 28), dtype=np.uint8)
    stored[0, :] = 255
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=26)}
    )
    train = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(stored)] * 2, "label": [0, 25]}, features=features
    )
    asked = _fake_hub(monkeypatch, datasets.DatasetDict({"train": train}))
    data = load_hub_dataset("tanganke/emnist_letters")
    assert asked == ["tanganke/emnist_letters"] and data.num_classes == 26
    np.testing.assert_array_equal(data.x[0, 0], stored.T / np.float32(255.0))
    mean, std = _stats(data.x)  # no published statistics: computed
    np.testing.assert_allclose(data.normalization.mean, mean)
    np.testing.assert_allclose(data.normalization.std, std)


def test_a_failed_hub_load_says_how_to_work_offline(monkeypatch):
    def offline(name, *args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError, match=r"loading 'uoft-cs/cifar10' from the hub failed") as err:
        load_hub_dataset("cifar10")
    assert "save_to_disk('data/x')" in str(err.value) and "hf:data/x" in str(err.value)


# -- Normalization and the model's pre-hook -------------------------------------------------
def test_normalization_validates_itself():
    assert Normalization([0.5, 0.5], [1, 2]).mean == (0.5, 0.5)
    with pytest.raises(ConfigError, match="one mean and one std per channel"):
        Normalization((0.5,), (0.2, 0.2))
    with pytest.raises(ConfigError, match="positive stds"):
        Normalization((0.5,), (0.0,))
    with pytest.raises(ConfigError, match="normalization has 3 channels, the images have 1"):
        Dataset(
            "d", np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, np.int64), 2, CIFAR10.normalization
        )


def test_bundled_datasets_have_no_normalization():
    assert load_dataset("digits").normalization is None


def test_the_pre_hook_normalizes_the_input_and_leaves_the_state_dict_alone():
    norm = CIFAR10.normalization
    plain = build_model("cnn", (3, 32, 32), 10, seed=3)
    hooked = build_model("cnn", (3, 32, 32), 10, seed=3, normalization=norm)
    assert input_normalization(plain) is None and isinstance(input_normalization(hooked), Normalize)
    assert list(plain.state_dict()) == list(hooked.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(value, hooked.state_dict()[key])
    x = torch.rand(4, 3, 32, 32)
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(hooked(x), plain((x - mean) / std))
        # The hook follows the input's dtype, and survives pickling and deep copies.
        torch.testing.assert_close(
            hooked.double()(x.double()), plain.double()((x.double() - mean.double()) / std.double())
        )
        for clone in (pickle.loads(pickle.dumps(hooked)), copy.deepcopy(hooked)):
            torch.testing.assert_close(clone(x.double()), hooked(x.double()))


def test_a_normalization_of_other_channels_is_refused():
    with pytest.raises(ConfigError, match="normalization of 3 channels for inputs of 1"):
        build_model("mlp", (1, 8, 8), 10, normalization=CIFAR10.normalization)


def test_an_hf_run_config_builds_a_normalizing_model(tmp_path):
    from fedpriv.config import RunConfig
    from fedpriv.task import initial_state, new_model

    _save_cifar_like(tmp_path / "cifar10", n=30, dataset_name="cifar10")
    name = f"hf:{tmp_path / 'cifar10'}"
    data = load_dataset(name)
    assert data.name == name and data.x.shape == (30, 3, 32, 32)
    assert data.normalization == CIFAR10.normalization
    config = RunConfig(dataset=name, model="cnn", num_clients=2)
    model = new_model(config)
    hook = input_normalization(model)
    assert hook is not None
    torch.testing.assert_close(hook.mean.flatten(), torch.tensor(CIFAR10.normalization.mean))
    plain = build_model("cnn", (3, 32, 32), 10, seed=config.seed)
    assert list(initial_state(config)) == list(plain.state_dict())

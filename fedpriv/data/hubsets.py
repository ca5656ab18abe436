"""What fedpriv knows about hub image datasets: columns, normalization and orientation."""

from __future__ import annotations

from dataclasses import dataclass

from fedpriv.data.datasets import Normalization


@dataclass(frozen=True)
class HubSet:
    """A known image-classification dataset of the Hugging Face hub.

    Attributes
    ----------
    hub_id : str
        The id it is loaded by (``owner/name``).
    image : str
        Its image column.
    label : str
        Its label column.
    normalization : Normalization or None
        The published per-channel statistics of its training split; ``None``: computed from
        the loaded images, as for an unknown dataset.
    transpose : bool
        Whether its images are stored transposed (height and width swapped), as in the
        EMNIST binary files; they are transposed back when loaded.
    aliases : tuple[str, ...]
        Other names that load it: the hub's old un-namespaced ids.

    """

    hub_id: str
    image: str
    label: str
    normalization: Normalization | None = None
    transpose: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it answers to: the id, its last part, and the aliases (lower case)."""
        short = self.hub_id.rsplit("/", 1)[-1]
        return tuple(dict.fromkeys(n.lower() for n in (self.hub_id, short, *self.aliases)))


HUB_SETS: tuple[HubSet, ...] = (
    HubSet(
        "uoft-cs/cifar10",
        "img",
        "label",
        Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        aliases=("cifar10",),
    ),
    HubSet(
        "uoft-cs/cifar100",
        "img",
        "fine_label",
        Normalization((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        aliases=("cifar100",),
    ),
    HubSet(
        "zalando-datasets/fashion_mnist",
        "image",
        "label",
        Normalization((0.2860,), (0.3530,)),
        aliases=("fashion_mnist",),
    ),
    HubSet(
        "ylecun/mnist", "image", "label", Normalization((0.1307,), (0.3081,)), aliases=("mnist",)
    ),
    # EMNIST: parquet conversions of the NIST binary files, which store every image
    # transposed; the conversion scripts read the bytes as MNIST's do, so the images are
    # assumed to be still transposed (see docs/how-to/datasets.md). Stats are computed.
    HubSet("tanganke/emnist_mnist", "image", "label", transpose=True),
    HubSet("tanganke/emnist_letters", "image", "label", transpose=True),
    # FEMNIST (LEAF): 62 classes, cut from NIST SD 19 directly, upright. Stats are computed.
    HubSet("flwrlabs/femnist", "image", "character"),
)


def known_hub_set(name: str) -> HubSet | None:
    """The known dataset that hub id or alias ``name`` names, if any (case-insensitive).

    Only the full id and the aliases count here: ``someone/cifar10`` is not CIFAR-10.
    """
    wanted = name.strip().lower()
    for entry in HUB_SETS:
        if wanted in (entry.hub_id.lower(), *(a.lower() for a in entry.aliases)):
            return entry
    return None


def saved_hub_set(recorded: tuple[str | None, ...]) -> HubSet | None:
    """The known dataset a ``save_to_disk`` folder was saved from, by the names it records.

    ``recorded`` holds the ``dataset_name`` and ``builder_name`` of the folder's dataset
    info. The hub records a dataset's last id part (``cifar10`` for ``uoft-cs/cifar10``), so
    that, or a full id or an alias, selects an entry; anything else selects none.
    """
    for value in recorded:
        if not value:
            continue
        wanted = value.strip().lower()
        for entry in HUB_SETS:
            if wanted in entry.names:
                return entry
    return None

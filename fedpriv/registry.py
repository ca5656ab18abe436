"""Every name a user can choose (scheme, defense, model, dataset, partitioner) and its class.

A registry maps each name to where its implementation lives (``module:attribute``, as Flower
names its components) and loads it on first use: validating a configuration imports none of
the implementations, and a process imports only the ones its run uses. Adding an aggregation
scheme is one line here and one new module (see ``docs/explanation/architecture.md``).

Models, datasets and partitioners also come from other packages, without a change here:
through Python entry points (groups ``fedpriv.models``, ``fedpriv.datasets``,
``fedpriv.partitioners``), listed after the built-in names, or named directly by a dotted
path ``package.module:attribute`` wherever a name is asked for.

One module: every name a user can choose is decided here, with the traits that decide which
compose, so that a configuration is checked without importing any implementation.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from fedpriv.adversary import ServerAttack
from fedpriv.errors import ConfigError

T = TypeVar("T")


class Trait(StrEnum):
    """What a scheme offers a defense (or an adversary) composed with it.

    Declared in the registry so that a configuration is checked without importing either.
    """

    NOISY_SUM = "the server adds noise to the aggregate before anyone reads it"
    PLAINTEXT_BROADCAST = "the server sends each client a plaintext model it may craft"
    DECRYPTION_ORACLE = "the server asks clients to decrypt ciphertexts it chooses"
    ENCRYPTED_BROADCAST = "the server broadcasts an encrypted sum it may recombine"
    PER_SAMPLE_GRADIENTS = "each record's gradient is its own (no BatchNorm mixes the batch)"
    CRAFTABLE_LAYERS = "its first layers are linear, two hidden ones a server can craft"


@dataclass(frozen=True)
class Entry:
    """One registered implementation.

    Attributes
    ----------
    target : str
        ``module:attribute`` of the implementation.
    provides : frozenset[Trait]
        What it offers others (schemes).
    requires : frozenset[Trait]
        What it needs from the scheme it is composed with (defenses).

    """

    target: str
    provides: frozenset[Trait] = frozenset()
    requires: frozenset[Trait] = frozenset()


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """The error for a name that is not one of ``valid``: all of them, and the closest."""
    return unknown_names(kind, [name], valid)


def unknown_names(kind: str, names: Iterable[str], valid: Iterable[str]) -> ConfigError:
    """The error for every name that is not one of ``valid``, each with its closest match.

    One error names them all, so that a file with two typos is fixed in one go.
    """
    valid = list(valid)
    named = []
    for name in names:
        close = difflib.get_close_matches(name, valid, n=1)
        named.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    kinds = kind if len(named) == 1 else _plural(kind)
    return ConfigError(f"unknown {kinds} {', '.join(named)}; valid choices: {', '.join(valid)}")


def _plural(kind: str) -> str:
    """``run-config key`` -> ``run-config keys``; ``key in [run]`` -> ``keys in [run]``."""
    head, sep, tail = kind.partition(" in ")
    return f"{head}s{sep}{tail}"


class Registry(Generic[T]):
    """Names of one kind of plug-in, each mapped to the :class:`Entry` of its implementation.

    Parameters
    ----------
    kind : str
        What the names are (``aggregation``, ``model``...): used in error messages.
    entries : Mapping[str, str | Entry]
        Name -> entry (or just its ``module:attribute``), in the order help texts list them.
    group : str | None
        The entry-point group other packages register more names in (read once, on first
        use; a built-in name is never replaced). With a group, a dotted path
        ``module:attribute`` is accepted as a name too.

    """

    def __init__(
        self, kind: str, entries: Mapping[str, str | Entry], group: str | None = None
    ) -> None:
        self.kind = kind
        self.group = group
        self._builtin = {
            str(name): entry if isinstance(entry, Entry) else Entry(entry)
            for name, entry in entries.items()
        }
        # Where each plug-in name came from, for errors: "entry point 'x = m:a' of dist d".
        self._origins: dict[str, str] = {}

    @functools.cached_property
    def _entries(self) -> dict[str, Entry]:
        entries = dict(self._builtin)
        if self.group is None:
            return entries
        for point in installed_entry_points(self.group):
            dist = point.dist.name if point.dist is not None else "an unnamed distribution"
            origin = f"entry point '{point.name} = {point.value}' (group {self.group}, {dist})"
            if point.name in entries:
                logging.getLogger("fedpriv").warning(
                    "ignoring %s: %s %r is taken", origin, self.kind, point.name
                )
                continue
            entries[point.name] = Entry(point.value)
            self._origins[point.name] = origin
        return entries

    def names(self) -> tuple[str, ...]:
        """The valid names, in registration order (built-in, then from entry points)."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def is_builtin(self, name: str) -> bool:
        """Whether ``name`` is one of fedpriv's own (not a plug-in's, nor a dotted path)."""
        return name in self._builtin

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def check(self, name: str) -> str:
        """Return ``name`` if it is built in, or a plug-in or dotted path that loads; else raise.

        Raises
        ------
        ConfigError
            Listing every registered name, or naming the dotted path and why it failed.

        """
        # A built-in name is checked without looking for plug-ins (a scan of every
        # installed distribution's metadata).
        if name in self._builtin:
            return name
        if name in self._entries:
            self.load(name)  # a plug-in is checked by loading it: its error comes first
            return name
        if self.group is not None and is_dotted_path(name):
            self._load_dotted(name)
            return name
        raise unknown_name(self.kind, name, self.choices())

    def choices(self) -> tuple[str, ...]:
        """What a user may give: every name, and a dotted path where plug-ins are allowed."""
        return self.names() + (("<package.module:attribute>",) if self.group else ())

    def entry(self, name: str) -> Entry:
        """The registration of ``name`` (a dotted path is its own, providing no trait)."""
        if name in self._builtin:
            return self._builtin[name]
        if self.check(name) not in self._entries:
            return Entry(name)
        return self._entries[name]

    def providing(self, trait: Trait) -> tuple[str, ...]:
        """The names whose implementations provide ``trait``."""
        return tuple(name for name, entry in self._entries.items() if trait in entry.provides)

    def load(self, name: str) -> T:
        """Import and return the implementation registered as ``name``.

        Raises
        ------
        ConfigError
            If a plug-in's module or attribute does not load (naming its entry point).

        """
        if name not in self._builtin and name not in self._entries:
            result: T = self._load_dotted(self.check(name))
            return result
        try:
            result = load_target(self._entries[name].target)
        except (ImportError, AttributeError) as err:
            if name not in self._origins:
                raise
            raise ConfigError(
                f"{self.kind} {name!r}: {self._origins[name]} failed to load: "
                f"{type(err).__name__}: {err}"
            ) from err
        return result

    def _load_dotted(self, name: str) -> Any:
        try:
            return load_target(name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(
                f"{self.kind} {name!r} does not load: {type(err).__name__}: {err}"
            ) from err


@functools.cache
def all_entry_points() -> importlib.metadata.EntryPoints | importlib.metadata.SelectableGroups:
    """Every installed distribution's entry points, read once per process.

    ``importlib.metadata.entry_points(group=...)`` reads every distribution's metadata on
    each call; fedpriv's registries each ask for their own group, so one read serves them
    all (a forked ClientApp read them four times: 0.1-0.2 s of a 0.5-1 s task, measured).
    """
    return importlib.metadata.entry_points()


def installed_entry_points(group: str) -> importlib.metadata.EntryPoints:
    """The installed distributions' entry points of ``group`` (from :func:`all_entry_points`)."""
    return all_entry_points().select(group=group)


def is_dotted_path(name: str) -> bool:
    """Whether ``name`` has the shape ``package.module:attribute`` (not whether it loads)."""
    module, sep, attribute = name.partition(":")
    parts = [*module.split("."), attribute]
    return bool(sep) and all(part.isidentifier() for part in parts)


@functools.cache
def load_target(target: str) -> Any:
    """Import ``module:attribute`` and return the attribute (once per process)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Aggregation(StrEnum):
    """fedpriv's own aggregation schemes (the ``aggregation`` run-config key).

    The key takes any name :data:`SCHEMES` knows: these, and schemes other packages register
    under the entry-point group ``fedpriv.schemes``.
    """

    PLAINTEXT = "plaintext"
    CKKS = "ckks"
    CKKS_THRESHOLD = "ckks-threshold"
    SECAGG = "secagg"


class Defense(StrEnum):
    """fedpriv's own defenses (the ``defense`` run-config key).

    The key takes any name :data:`DEFENSES` knows: these, and defenses other packages
    register under the entry-point group ``fedpriv.defenses``.
    """

    NONE = "none"
    DP = "dp"
    DP_SGD = "dp-sgd"
    MEMGUARD = "memguard"


NOISY_SUM = frozenset({Trait.NOISY_SUM})
PLAIN_BROADCAST = frozenset({Trait.PLAINTEXT_BROADCAST})
# Why a federation without the trait leaves a malicious server no way to play its attack.
MISSING_TRAIT = {
    Trait.PLAINTEXT_BROADCAST: (
        "it can only send ciphertexts, and clients refuse a trivial one (c1 = 0) that would "
        "carry a crafted model"
    ),
    Trait.DECRYPTION_ORACLE: (
        "no client holds a key share to decrypt a ciphertext the server chooses"
    ),
    Trait.ENCRYPTED_BROADCAST: "the server broadcasts no ciphertext it could recombine",
    Trait.CRAFTABLE_LAYERS: "the attack crafts the hidden layers of model 'mlp'",
}
CRAFTS_MODELS = frozenset({Trait.PLAINTEXT_BROADCAST, Trait.CRAFTABLE_LAYERS})
# Each value is a :class:`fedpriv.adversaries.base.MaliciousServer` subclass; ``requires``
# is what it needs of the scheme and the model (the only place this is decided).
ADVERSARIES: Registry[Any] = Registry(
    "malicious-server attack",
    {
        ServerAttack.ISOLATION: Entry(
            "fedpriv.adversaries.isolation:Isolation", requires=CRAFTS_MODELS
        ),
        ServerAttack.IMPRINT: Entry("fedpriv.adversaries.imprint:Imprint", requires=CRAFTS_MODELS),
        ServerAttack.DECRYPT_ONE: Entry(
            "fedpriv.adversaries.decrypt_one:DecryptOne",
            requires=frozenset({Trait.DECRYPTION_ORACLE}),
        ),
        ServerAttack.BROADCAST_ONE: Entry(
            "fedpriv.adversaries.broadcast_one:BroadcastOne",
            requires=frozenset({Trait.ENCRYPTED_BROADCAST}),
        ),
    },
)
# Each value is an :class:`fedpriv.schemes.base.AggregationScheme` subclass.
SCHEMES: Registry[Any] = Registry(
    "aggregation",
    {
        Aggregation.PLAINTEXT: Entry(
            "fedpriv.schemes.plaintext:PlaintextScheme", provides=PLAIN_BROADCAST
        ),
        Aggregation.CKKS: Entry(
            "fedpriv.schemes.ckks:CkksScheme", provides=NOISY_SUM | {Trait.ENCRYPTED_BROADCAST}
        ),
        Aggregation.CKKS_THRESHOLD: Entry(
            "fedpriv.schemes.threshold.scheme:ThresholdScheme",
            provides=PLAIN_BROADCAST | {Trait.DECRYPTION_ORACLE},
        ),
        Aggregation.SECAGG: Entry("fedpriv.schemes.secagg:SecAggScheme", provides=PLAIN_BROADCAST),
    },
    group="fedpriv.schemes",
)
# Each value is a :class:`fedpriv.defenses.base.Defense` subclass.
DEFENSES: Registry[Any] = Registry(
    "defense",
    {
        Defense.NONE: Entry("fedpriv.defenses.base:NoDefense"),
        Defense.DP: Entry("fedpriv.defenses.client_dp:ClientLevelDP", requires=NOISY_SUM),
        Defense.DP_SGD: Entry(
            "fedpriv.defenses.dp_sgd:DPSGD", requires=frozenset({Trait.PER_SAMPLE_GRADIENTS})
        ),
        Defense.MEMGUARD: Entry("fedpriv.defenses.memguard:MemGuardDefense"),
    },
    group="fedpriv.defenses",
)
# Each value builds a torch module from ``(input_shape, num_classes)``.
PER_SAMPLE = frozenset({Trait.PER_SAMPLE_GRADIENTS})
MODELS: Registry[Any] = Registry(
    "model",
    {
        "mlp": Entry("fedpriv.models.nets:MLP", provides=PER_SAMPLE | {Trait.CRAFTABLE_LAYERS}),
        "cnn": Entry("fedpriv.models.nets:LeNet", provides=PER_SAMPLE),
        "convnet": Entry("fedpriv.models.nets:ConvNet", provides=PER_SAMPLE),
        "resnet18": "fedpriv.models.resnet:ResNet18",
        "resnet18-gn": Entry("fedpriv.models.resnet:ResNet18GN", provides=PER_SAMPLE),
        "resnet20": "fedpriv.models.resnet:ResNet20",
        "resnet20-gn": Entry("fedpriv.models.resnet:ResNet20GN", provides=PER_SAMPLE),
    },
    group="fedpriv.models",
)
# Each value loads a :class:`fedpriv.data.datasets.Dataset`; ``hf:<name>`` names hub data.
DATASETS: Registry[Any] = Registry(
    "dataset",
    {
        "digits": "fedpriv.data.bundled:digits",
        "mnist5k": "fedpriv.data.bundled:mnist5k",
        "synthetic": "fedpriv.data.bundled:synthetic",
        "synthetic50k": "fedpriv.data.bundled:synthetic50k",
    },
    group="fedpriv.datasets",
)
HUB_PREFIX = "hf:"
HUB_LOADER = "fedpriv.data.hub:load_hub_dataset"
# ``app:<module:function>``: a Flower app's data loader, ``(partition_id, num_partitions) ->
# (x, y)``; the dataset of a run recorded from the app, read by ``fedpriv attack`` only.
APP_DATA_PREFIX = "app:"
# Each value splits record indices among clients.
PARTITIONERS: Registry[Any] = Registry(
    "partitioner",
    {
        "iid": "fedpriv.data.partition:iid",
        "dirichlet": "fedpriv.data.partition:dirichlet",
        "shards": "fedpriv.data.partition:shards",
    },
    group="fedpriv.partitioners",
)


def check_dataset_name(name: str) -> str:
    """Return ``name`` if fedpriv can load it (registered, a dotted path, or ``hf:<name>``)."""
    if name.startswith(HUB_PREFIX) and len(name) > len(HUB_PREFIX):
        return name
    if name.startswith(APP_DATA_PREFIX) and is_dotted_path(name[len(APP_DATA_PREFIX) :]):
        return name
    if name in DATASETS or is_dotted_path(name):
        return DATASETS.check(name)
    raise unknown_name("dataset", name, [*DATASETS.choices(), "hf:<name-or-path>"])


def adversary_refusal(attack: str, aggregation: str, model: str) -> str | None:
    """Why a malicious server playing ``attack`` cannot act in this federation (``None``: it can).

    The one place that decides it (configuration, comparisons and views ask here): the
    adversary's required traits against what the scheme and the model provide.
    """
    missing = ADVERSARIES.entry(attack).requires - (
        SCHEMES.entry(aggregation).provides | MODELS.entry(model).provides
    )
    if not missing:
        return None
    trait = min(missing)  # deterministic: one reason, the same every time
    if trait == Trait.CRAFTABLE_LAYERS:
        return f"{MISSING_TRAIT[trait]}; got model {model!r}"
    able = ", ".join(SCHEMES.providing(trait))
    return (
        f"it needs a scheme in which {trait.value} ({able}); under aggregation "
        f"{aggregation!r} {MISSING_TRAIT[trait]}"
    )

"""Settings of one `fedpriv attack` invocation: each family's budget, rounds, clients, access."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fedpriv.attacks.results import OUTPUTS
from fedpriv.errors import ConfigError

METHODS = ("ig", "dlg", "idlg")


@dataclass(frozen=True)
class InversionSettings:
    """Settings of one gradient-inversion attack.

    Attributes
    ----------
    method : str
        ``ig`` (cosine distance + total variation, Adam, signed gradients, restarts),
        ``dlg`` (L2 matching, L-BFGS, labels optimized jointly) or ``idlg`` (L2 matching,
        L-BFGS, labels read off the last layer's bias update first).
    iterations : int
        Optimizer steps (Adam) or L-BFGS outer steps.
    restarts : int
        Independent random starts; the one with the lowest matching loss is kept.
    learning_rate : float
        Step size of the attack's optimizer.
    tv_weight : float
        Weight of the total-variation prior (``ig`` only).
    max_images : int
        Most records reconstructed per update (clients with more get this many).
    max_steps : int
        Most local SGD steps simulated exactly. Longer local training is approximated by this
        many full-batch steps with the same total step length (``lr x steps / (1 - momentum)``
        spread over them): unrolling hundreds of steps costs minutes per client.
    seed : int
        Seed of the dummy initialisation.

    """

    method: str = "ig"
    iterations: int = 1000
    restarts: int = 2
    learning_rate: float = 0.1
    # Measured on single-image FedSGD updates (tests/integration/test_attacks.py): 1e-3
    # keeps IG at 50-58 dB, 1e-4 lets every client reach 75 dB.
    tv_weight: float = 1e-4
    max_images: int = 8
    max_steps: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown inversion method {self.method!r}; valid: {METHODS}")
        for name in ("iterations", "restarts", "max_images", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.tv_weight < 0:
            raise ConfigError("learning_rate must be > 0 and tv_weight >= 0")

    def to_dict(self) -> dict[str, object]:
        """Settings as recorded in result files."""
        return asdict(self)


@dataclass(frozen=True)
class MembershipSettings:
    """Settings of the membership attacks.

    Attributes
    ----------
    num_shadows : int
        Shadow models, each trained with the target's recipe on a random half-sized draw of the
        attacker's candidate pool.
    shadow_epochs : int
        0 (the default): shadows are trained as the target was, by FedAvg over
        ``num-clients`` shards of their records with the run's sampling and local recipe.
        Otherwise, epochs of centralized training that stand in for it.
    fixed_variance : bool
        LiRA with one variance shared by all records (Carlini et al. recommend it for few
        shadows).
    max_targets : int
        Most members evaluated (as many non-members are drawn, where available).
    seed : int
        Seed of target selection and shadow training.
    rmia_references : int
        RMIA: reference models used (the first of the shadow models; 1 to 4, the regime
        where RMIA stays strong and LiRA degrades).
    rmia_offline_a : float
        RMIA offline: ``a`` of ``p(x) = ((1 + a) p_OUT(x) + (1 - a)) / 2`` (0.3 as in the
        paper's and ML Privacy Meter's defaults), where ``rmia_temperature`` is fixed.
    rmia_gamma : float
        RMIA: how much a record's likelihood ratio must exceed a population record's.
    rmia_temperature : float
        RMIA: softmax temperature of the probabilities compared; 0 (default) chooses it and
        ``a`` on the reference models (each plays the target in turn), as the paper tunes.

    """

    num_shadows: int = 16
    shadow_epochs: int = 0
    fixed_variance: bool = True
    max_targets: int = 500
    seed: int = 0
    rmia_references: int = 2
    rmia_offline_a: float = 0.3
    rmia_gamma: float = 1.0
    rmia_temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.num_shadows < 2:
            raise ConfigError(f"num_shadows must be >= 2, got {self.num_shadows}")
        if not 1 <= self.rmia_references <= min(4, self.num_shadows):
            raise ConfigError(
                f"rmia_references must lie in 1..min(4, num_shadows), got {self.rmia_references}"
            )
        if not 0 <= self.rmia_offline_a <= 1 or self.rmia_gamma <= 0:
            raise ConfigError("rmia_offline_a must lie in [0, 1] and rmia_gamma be > 0")
        if self.rmia_temperature < 0:
            raise ConfigError("rmia_temperature must be > 0, or 0 to choose it")
        if self.shadow_epochs < 0 or self.max_targets < 2:
            raise ConfigError("shadow_epochs must be >= 0 and max_targets >= 2")

    def to_dict(self) -> dict[str, object]:
        """Settings as recorded in result files."""
        return asdict(self)


MODES = ("white-box", "black-box")


@dataclass(frozen=True)
class MIFaceSettings:
    """Parameters of MI-Face (the paper's alpha, beta, gamma, lambda) and PROCESS.

    Attributes
    ----------
    mode : str
        ``white-box`` (autograd) or ``black-box`` (finite differences through queries).
    iterations : int
        alpha: the iteration limit.
    patience : int
        beta: stop when the cost is >= the maximum of the last ``patience`` costs.
    cost_threshold : float
        gamma: stop once the cost falls to this value.
    step_size : float
        lambda: gradient step size.
    denoise_weight : float
        Total-variation denoising strength in PROCESS (0, the default, disables it: on 8x8
        digits any denoising per step stalls the descent).
    sharpen_amount : float
        Unsharp-mask amount in PROCESS (0 disables it).
    query_budget : int
        Black-box only: most model queries per label.
    fd_epsilon : float
        Black-box only: finite-difference step.

    """

    mode: str = "white-box"
    iterations: int = 1000
    patience: int = 100
    cost_threshold: float = 0.001
    step_size: float = 0.1
    denoise_weight: float = 0.0
    sharpen_amount: float = 0.3
    query_budget: int = 100_000
    fd_epsilon: float = 1e-3

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown MI-Face mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.iterations < 1 or self.patience < 1 or self.query_budget < 1:
            raise ConfigError("iterations, patience and query_budget must be >= 1")
        if not 0 <= self.cost_threshold < 1 or self.step_size <= 0 or self.fd_epsilon <= 0:
            raise ConfigError("need 0 <= cost_threshold < 1, step_size > 0, fd_epsilon > 0")

    def to_dict(self) -> dict[str, object]:
        """Settings as recorded in result files."""
        return asdict(self)


@dataclass(frozen=True)
class SuiteSettings:
    """Settings of one `fedpriv attack` invocation (each part validates itself).

    Attributes
    ----------
    inversion, membership, mi_face
        Each family's budget.
    rounds : tuple[int, ...]
        Rounds whose updates gradient inversion attacks.
    max_clients : int
        Most client updates inverted per round (0: every client the round sampled; a cap is
        for quick runs, and is recorded in the result).
    outsider_output : str
        What the outsider's queries return: ``probabilities`` or ``labels``.
    colluders : int
        Clients colluding with the server in the ``colluding-client`` threat.

    """

    inversion: InversionSettings = field(default_factory=InversionSettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    mi_face: MIFaceSettings = field(default_factory=MIFaceSettings)
    rounds: tuple[int, ...] = (1,)
    max_clients: int = 0
    outsider_output: str = "probabilities"
    colluders: int = 1

    def __post_init__(self) -> None:
        if self.max_clients < 0 or not self.rounds or min(self.rounds) < 1:
            raise ConfigError(
                "max_clients must be >= 0 (0: every client) and rounds a non-empty list of "
                "rounds >= 1"
            )
        if self.outsider_output not in OUTPUTS:
            raise ConfigError(f"outsider output must be one of {', '.join(OUTPUTS)}")
        if self.colluders < 1:
            raise ConfigError(f"colluders must be >= 1, got {self.colluders}")

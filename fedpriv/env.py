"""Process environment for running Flower and Ray offline, quietly and with bounded memory."""

from __future__ import annotations

import os

# Flower must not install runtime dependencies, phone home or check for updates; Ray must
# not report usage. Set before Flower or Ray start (child processes inherit them).
OFFLINE_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    # Each virtual client is one torch thread; BLAS pools would oversubscribe the cores.
    "OMP_NUM_THREADS": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}
# Ray otherwise reserves 30% of RAM for its object store; messages here are a few MB.
RAY_OBJECT_STORE_BYTES = 256 * 1024**2


def apply_offline_env() -> None:
    """Set the offline/quiet variables unless the user already set them."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def ray_init_args(num_cpus: int | None = None) -> dict[str, object]:
    """Arguments for ``ray.init``: a capped object store, or attach to ``RAY_ADDRESS``."""
    if os.environ.get("RAY_ADDRESS"):
        # An existing cluster decides its own resources; passing num_cpus would be an error.
        return {"address": os.environ["RAY_ADDRESS"]}
    args: dict[str, object] = {
        "object_store_memory": RAY_OBJECT_STORE_BYTES,
        "include_dashboard": False,
    }
    if num_cpus is not None:
        args["num_cpus"] = num_cpus
    return args

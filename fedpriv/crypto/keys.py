"""Key provisioning: a secret-key context for clients, a parameters-only context for the server."""

from __future__ import annotations

import functools
import json
import os
import stat
from pathlib import Path
from typing import Any

from fedpriv.crypto.authenticated import MAC_FILE, AuthPolicy, policy_bytes
from fedpriv.crypto.backend import CkksBackend
from fedpriv.crypto.files import write_private, write_public
from fedpriv.crypto.mac import MacKey
from fedpriv.crypto.packed import PackedContext
from fedpriv.crypto.presets import CkksPreset, get_preset
from fedpriv.crypto.seal import SealContext
from fedpriv.crypto.vectors import TensealContext
from fedpriv.errors import ConfigError, KeyMaterialError

CLIENT_CONTEXT = "client.ctx"
SERVER_CONTEXT = "server.ctx"
PRESET_FILE = "preset.json"
# Any backend's context; the ciphertext type depends on the backend.
CkksContext = CkksBackend[Any]
_BACKENDS: dict[str, type[SealContext] | type[TensealContext] | type[PackedContext]] = {
    "seal": SealContext,
    "tenseal": TensealContext,
    "packed": PackedContext,
}


def make_context(preset: CkksPreset) -> CkksContext:
    """Create a fresh CKKS context holding a new secret key for ``preset``.

    Raises
    ------
    ConfigError
        For a threshold preset: nobody makes its keys ahead; the clients do, in the run.

    """
    if preset.backend not in _BACKENDS:
        raise ConfigError(
            f"preset {preset.name} is for ckks-threshold: its keys are made by the clients "
            "at the start of each run (no key set to provision)"
        )
    return _BACKENDS[preset.backend].generate(preset)


def server_context_bytes(context: CkksContext) -> bytes:
    """Serialize ``context`` with parameters only: no secret, public, relin or Galois keys."""
    return context.to_bytes(secret=False)


def client_context_bytes(context: CkksContext) -> bytes:
    """Serialize ``context`` with its secret key (what clients, the key holders, get)."""
    return context.to_bytes(secret=True)


def provision_keys(
    out_dir: str | Path,
    preset_name: str,
    server_dir: str | Path | None = None,
    auth: AuthPolicy | None = None,
) -> dict[str, Path]:
    """Write a new key set into ``out_dir``.

    ``client.ctx`` (secret key, mode 0600) is for clients only; ``server.ctx`` holds CKKS
    parameters and nothing else; ``preset.json`` names the preset. With ``server_dir``, the
    server's share (``server.ctx`` and ``preset.json``) goes there instead, so that a
    deployment can mount each side's directory into that side only. With ``auth``, a MAC key
    and the policy its holders enforce go into ``mac.key`` (0600, clients only): every
    upload is then tagged and every aggregate verified (:mod:`fedpriv.crypto.authenticated`).

    Raises
    ------
    ConfigError
        ``auth`` for a preset whose ciphertexts the MAC cannot cover (not ``packed``).

    Returns
    -------
    dict[str, Path]
        Paths by role: ``client``, ``server``, ``preset``.

    """
    preset = get_preset(preset_name)
    if auth is not None and preset.backend != "packed":
        raise ConfigError(
            f"preset {preset.name} ({preset.backend} backend) cannot be authenticated: its "
            "ciphertexts are not in numpy; use a packed preset, or provision without "
            "authentication (secure against an honest server only)"
        )
    out = Path(out_dir)
    server = Path(server_dir) if server_dir is not None else out
    for directory in {out, server}:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    context = make_context(preset)
    paths = {
        "client": out / CLIENT_CONTEXT,
        "server": server / SERVER_CONTEXT,
        "preset": out / PRESET_FILE,
    }
    preset_json = json.dumps({"preset": preset.name}).encode()
    for directory in {out, server}:
        write_public(directory / PRESET_FILE, preset_json)
    write_public(paths["server"], server_context_bytes(context))
    if auth is not None:
        _, secret = MacKey.generate()
        paths["mac"] = out / MAC_FILE
        write_private(paths["mac"], policy_bytes(secret, auth))
    elif (out / MAC_FILE).exists():
        (out / MAC_FILE).unlink()
    # Last: a key set whose client.ctx exists is complete.
    write_private(paths["client"], client_context_bytes(context))
    return paths


def read_preset(key_dir: str | Path) -> CkksPreset:
    """Return the preset a key directory was provisioned for."""
    path = Path(key_dir) / PRESET_FILE
    try:
        return get_preset(json.loads(path.read_text())["preset"])
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as err:
        raise KeyMaterialError(f"{path}: cannot read the key set's preset ({err})") from err


def check_preset(key_dir: str | Path, preset_name: str) -> None:
    """Refuse a key set provisioned for another preset than the run's ``ckks-preset``."""
    provisioned = read_preset(key_dir).name
    if provisioned != preset_name:
        raise ConfigError(
            f"{key_dir} holds keys for preset {provisioned}, the run uses {preset_name}; "
            f"provision keys for it or set ckks-preset={provisioned!r}"
        )


def load_client_context(key_dir: str | Path) -> CkksContext:
    """Load the clients' secret-key context; refuse a file others can read."""
    path = Path(key_dir) / CLIENT_CONTEXT
    return _load_client(str(path), _mtime(path), read_preset(key_dir))


def load_server_context(key_dir: str | Path) -> CkksContext:
    """Load the server's context; refuse one that holds any key."""
    path = Path(key_dir) / SERVER_CONTEXT
    return _load_server(str(path), _mtime(path), read_preset(key_dir))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as err:
        raise KeyMaterialError(f"{path}: key file missing ({err.strerror})") from err


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise KeyMaterialError(f"{path}: cannot read the key file ({err.strerror})") from err


@functools.lru_cache(maxsize=4)
def _load_client(path: str, _mtime: float, preset: CkksPreset) -> CkksContext:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as err:
        raise KeyMaterialError(f"{path}: cannot read the key file ({err.strerror})") from err
    if mode & 0o077:
        raise KeyMaterialError(
            f"{path}: secret-key context is readable by group/others (mode {mode:04o}); "
            f"run chmod 600 {path}"
        )
    context = parse_context(_read(path), preset, path)
    if not context.is_private():
        raise KeyMaterialError(f"{path}: client context holds no secret key")
    return context


@functools.lru_cache(maxsize=4)
def _load_server(path: str, _mtime: float, preset: CkksPreset) -> CkksContext:
    return server_context_from_bytes(_read(path), preset, path)


def server_context_from_bytes(
    data: bytes, preset: CkksPreset, origin: str = "server context"
) -> CkksContext:
    """Parse a server context and refuse it unless it holds CKKS parameters only."""
    context = parse_context(data, preset, origin, allow_secret=False)
    held = context.held_keys()
    if held:
        raise KeyMaterialError(
            f"{origin}: the server context holds {', '.join(held)}; the server must hold "
            "parameters only (provision with `fedpriv keys new`)"
        )
    return context


def parse_context(
    data: bytes, preset: CkksPreset, origin: str, allow_secret: bool = True
) -> CkksContext:
    """Parse a context file of ``preset``'s backend (with or without the secret key)."""
    return _BACKENDS[preset.backend].from_bytes(data, preset, origin, allow_secret)

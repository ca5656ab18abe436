"""Key provisioning: a secret-key context for clients, a parameters-only context for the server."""

from __future__ import annotations

import functools
import json
import os
import stat
from pathlib import Path

import tenseal as ts

from fedpriv.crypto.presets import CkksPreset, get_preset
from fedpriv.errors import KeyMaterialError

CLIENT_CONTEXT = "client.ctx"
SERVER_CONTEXT = "server.ctx"
PRESET_FILE = "preset.json"


def make_context(preset: CkksPreset) -> ts.Context:
    """Create a fresh CKKS context holding a new secret key for ``preset``."""
    encryption = (
        ts.ENCRYPTION_TYPE.SYMMETRIC
        if preset.encryption == "symmetric"
        else ts.ENCRYPTION_TYPE.ASYMMETRIC
    )
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        preset.poly_modulus_degree,
        coeff_mod_bit_sizes=list(preset.coeff_mod_bit_sizes),
        encryption_type=encryption,
    )
    context.global_scale = 2.0**preset.scale_bits
    return context


def server_context_bytes(context: ts.Context) -> bytes:
    """Serialize ``context`` with parameters only: no secret, public, relin or Galois keys."""
    return context.serialize(
        save_public_key=False,
        save_secret_key=False,
        save_galois_keys=False,
        save_relin_keys=False,
    )


def client_context_bytes(context: ts.Context) -> bytes:
    """Serialize ``context`` with its secret key (what clients, the key holders, get)."""
    return context.serialize(
        save_public_key=True,
        save_secret_key=True,
        save_galois_keys=False,
        save_relin_keys=False,
    )


def provision_keys(out_dir: str | Path, preset_name: str) -> dict[str, Path]:
    """Write a new key set into ``out_dir``.

    ``client.ctx`` (secret key, mode 0600) is for clients only; ``server.ctx`` holds CKKS
    parameters and nothing else; ``preset.json`` names the preset.

    Returns
    -------
    dict[str, Path]
        Paths by role: ``client``, ``server``, ``preset``.

    """
    preset = get_preset(preset_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    context = make_context(preset)
    paths = {
        "client": out / CLIENT_CONTEXT,
        "server": out / SERVER_CONTEXT,
        "preset": out / PRESET_FILE,
    }
    write_private(paths["client"], client_context_bytes(context))
    write_public(paths["server"], server_context_bytes(context))
    write_public(paths["preset"], json.dumps({"preset": preset.name}).encode())
    return paths


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600 from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0644."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_preset(key_dir: str | Path) -> CkksPreset:
    """Return the preset a key directory was provisioned for."""
    path = Path(key_dir) / PRESET_FILE
    try:
        return get_preset(json.loads(path.read_text())["preset"])
    except (OSError, ValueError, KeyError) as err:
        raise KeyMaterialError(f"{path}: cannot read the key set's preset ({err})") from err


def load_client_context(key_dir: str | Path) -> ts.Context:
    """Load the clients' secret-key context; refuse a file others can read."""
    path = Path(key_dir) / CLIENT_CONTEXT
    return _load_client(str(path), _mtime(path))


def load_server_context(key_dir: str | Path) -> ts.Context:
    """Load the server's context; refuse one that holds any key."""
    path = Path(key_dir) / SERVER_CONTEXT
    return _load_server(str(path), _mtime(path))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as err:
        raise KeyMaterialError(f"{path}: key file missing ({err.strerror})") from err


@functools.lru_cache(maxsize=4)
def _load_client(path: str, _mtime: float) -> ts.Context:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise KeyMaterialError(
            f"{path}: secret-key context is readable by group/others (mode {mode:04o}); "
            f"run chmod 600 {path}"
        )
    context = _parse_context(Path(path).read_bytes(), path)
    if not context.is_private():
        raise KeyMaterialError(f"{path}: client context holds no secret key")
    return context


@functools.lru_cache(maxsize=4)
def _load_server(path: str, _mtime: float) -> ts.Context:
    context = server_context_from_bytes(Path(path).read_bytes(), path)
    return context


def server_context_from_bytes(data: bytes, origin: str = "server context") -> ts.Context:
    """Parse a server context and refuse it unless it holds CKKS parameters only."""
    context = _parse_context(data, origin)
    held = held_keys(context)
    if held:
        raise KeyMaterialError(
            f"{origin}: the server context holds {', '.join(held)}; the server must hold "
            "parameters only (provision with `fedpriv keys new`)"
        )
    return context


def held_keys(context: ts.Context) -> list[str]:
    """Names of the keys a context holds (secret, public, relinearization, Galois)."""
    held = []
    if context.is_private():
        held.append("a secret key")
    try:
        if context.has_public_key():
            held.append("a public key")
    except ValueError:  # symmetric contexts have no public key at all
        pass
    if context.has_relin_keys():
        held.append("relinearization keys")
    if context.has_galois_keys():
        held.append("Galois keys")
    return held


def _parse_context(data: bytes, origin: str) -> ts.Context:
    try:
        return ts.context_from(data)
    except Exception as err:  # TenSEAL raises ValueError/RuntimeError from C++
        raise KeyMaterialError(f"{origin}: not a TenSEAL CKKS context ({err})") from err

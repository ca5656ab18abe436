"""Client identities: Ed25519 signing keys and the roster of their public keys (the PKI).

Secure aggregation against a server that deviates assumes that clients can authenticate
each other's messages through the server (Bonawitz et al., "Practical Secure Aggregation
for Privacy-Preserving Machine Learning", CCS 2017, Section 6: a PKI, signatures on the
key advertisements and a consistency round). fedpriv provisions one Ed25519 key per client
partition (``cryptography``'s implementation, RFC 8032) and a roster of the public keys,
both from whoever provisions the federation (in simulation the launcher, like the CKKS
keys). Each signed statement names what it is and binds the run, so that a signature cannot
be replayed as another statement or into another run. No Flower import: the threshold
protocol and the consistency mod carry these bytes in their records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedpriv.crypto.files import write_private, write_public
from fedpriv.errors import ConfigError, KeyMaterialError

IDENTITIES_DIR = "identities"
ROSTER_FILE = "roster.json"
SIGNATURE_BYTES = 64
_DOMAIN = b"fedpriv signed statement v1\x00"


def digest(data: bytes) -> bytes:
    """SHA-256 of ``data`` (what statements name instead of large payloads)."""
    return hashlib.sha256(data).digest()


def statement(kind: str, **fields: int | str | bytes | list[int] | list[bytes]) -> bytes:
    """The canonical bytes of a statement of ``kind`` with ``fields`` (bytes as hex)."""

    def plain(value: object) -> object:
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    body = {"kind": kind, **{k: plain(v) for k, v in fields.items()}}
    return _DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class SigningKey:
    """A client's private signing key."""

    def __init__(self, private: bytes) -> None:
        try:
            self._key = Ed25519PrivateKey.from_private_bytes(private)
        except ValueError as err:
            raise KeyMaterialError(f"not an Ed25519 private key: {err}") from err

    @classmethod
    def generate(cls) -> tuple[SigningKey, bytes]:
        """A new key and its 32 private bytes."""
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(raw), raw

    def public(self) -> bytes:
        """The 32-byte public key."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature of ``message`` (a :func:`statement`)."""
        return self._key.sign(message)


@dataclass(frozen=True)
class Roster:
    """The public keys of the federation's clients, by partition id, and their policy.

    Attributes
    ----------
    keys : dict[int, bytes]
        Partition id -> Ed25519 public key.
    min_uploads : int
        Fewest signed uploads of one round a party decrypts a sum of (fixed by whoever
        provisions the federation, not by the server's run config).

    """

    keys: dict[int, bytes]
    min_uploads: int = 1

    def verify(self, partition: int, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is ``partition``'s on ``message`` (unknown partitions: no)."""
        key = self.keys.get(partition)
        if key is None or not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_json(self) -> dict[str, object]:
        """As ``roster.json`` holds it."""
        keys = {str(p): key.hex() for p, key in sorted(self.keys.items())}
        return {"keys": keys, "min-uploads": self.min_uploads}

    @classmethod
    def from_json(cls, data: object, origin: str) -> Roster:
        """Read ``roster.json``."""
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise ConfigError(f"{origin} is not a roster")
        try:
            keys = {int(p): bytes.fromhex(str(k)) for p, k in data["keys"].items()}
            return cls(keys, int(data.get("min-uploads", 1)))
        except ValueError as err:
            raise ConfigError(f"{origin} is not a roster ({err})") from err


def provision_identities(
    key_dir: str | Path, partitions: range | list[int], min_uploads: int = 1
) -> Roster:
    """One signing key per partition (``identities/party-<p>.key``, 0600) and the roster.

    An existing roster is kept (a run that resumes keeps its identities).
    """
    folder = Path(key_dir)
    roster_path = folder / ROSTER_FILE
    if roster_path.is_file():
        return load_roster(folder)
    (folder / IDENTITIES_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = {}
    for partition in partitions:
        key, raw = SigningKey.generate()
        write_private(folder / IDENTITIES_DIR / f"party-{partition}.key", raw)
        keys[partition] = key.public()
    roster = Roster(keys, min_uploads)
    write_public(roster_path, json.dumps(roster.to_json(), indent=1).encode())
    return roster


def load_roster(key_dir: str | Path) -> Roster:
    """The roster a key directory holds.

    Raises
    ------
    KeyMaterialError
        If there is none (the federation was provisioned without identities).

    """
    path = Path(key_dir) / ROSTER_FILE
    if not path.is_file():
        raise KeyMaterialError(f"{path} is missing: the clients' identities were not provisioned")
    return Roster.from_json(json.loads(path.read_text()), str(path))


def load_identity(key_dir: str | Path, partition: int) -> SigningKey:
    """The signing key of ``partition`` in a key directory.

    Raises
    ------
    KeyMaterialError
        If the node holds none.

    """
    path = Path(key_dir) / IDENTITIES_DIR / f"party-{partition}.key"
    if not path.is_file():
        raise KeyMaterialError(f"{path} is missing: this client has no signing key")
    return SigningKey(path.read_bytes())

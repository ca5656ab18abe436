"""Client identities: Ed25519 signatures under the roster, statements that cannot be swapped."""

from __future__ import annotations

import stat

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedpriv.crypto.signing import (
    IDENTITIES_DIR,
    load_identity,
    load_roster,
    provision_identities,
    statement,
)


def test_roster_verifies_only_the_right_signer_on_the_right_statement(tmp_path):
    roster = provision_identities(tmp_path, range(3), min_uploads=2)
    assert load_roster(tmp_path) == roster and roster.min_uploads == 2
    key = load_identity(tmp_path, 1)
    message = statement("model-digest", run=7, round=3, digest=b"\x01" * 32)
    signature = key.sign(message)
    assert roster.verify(1, signature, message)
    # An independent check with cryptography's own verifier (raises on failure).
    Ed25519PublicKey.from_public_bytes(roster.keys[1]).verify(signature, message)
    assert not roster.verify(2, signature, message)  # another partition's key
    assert not roster.verify(9, signature, message)  # no such partition
    assert not roster.verify(1, signature, statement("model-digest", run=7, round=4,
                                                     digest=b"\x01" * 32))  # fmt: skip
    # The same fields under another kind are another statement.
    assert not roster.verify(1, signature, statement("threshold-upload", run=7, round=3,
                                                     digest=b"\x01" * 32))  # fmt: skip


def test_each_partition_key_is_private_to_its_file(tmp_path):
    provision_identities(tmp_path, range(2))
    for path in (tmp_path / IDENTITIES_DIR).iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A second provisioning keeps the roster (a resumed run keeps its identities).
    first = load_roster(tmp_path)
    assert provision_identities(tmp_path, range(2)) == first

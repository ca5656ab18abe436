"""Deployment credentials: the CA, TLS certificates and SuperNode key pairs."""

import os
from pathlib import Path

from fedpriv.deploy.credentials import make_certificates

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("superlink", "superexec-serverapp", "submit")


def test_certificates_verify_and_key_is_private(tmp_path):
    from cryptography import x509

    paths = make_certificates(tmp_path, ("superlink", "127.0.0.1"))
    assert oct(os.stat(paths["key"]).st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "superlink" in names.get_values_for_type(x509.DNSName)


def test_existing_certificates_are_kept_only_for_the_same_names(tmp_path, capsys):
    from fedpriv.cli import main

    out = tmp_path / "certs"
    assert main(["deploy", "certs", "--out", str(out), "--hosts", "superlink"]) == 0
    kept = ["deploy", "certs", "--exist-ok", "--out", str(out), "--hosts", "superlink"]
    assert main(kept) == 0
    assert main([*kept, "supernode-9"]) == 2
    assert "not valid for supernode-9" in capsys.readouterr().err


def test_per_service_certificates_name_only_their_service(tmp_path, capsys):
    from cryptography import x509

    from fedpriv.cli import main
    from fedpriv.deploy.credentials import certificate_hosts

    argv = ["deploy", "certs", "--out", str(tmp_path), "--hosts", "superlink", "localhost"]
    argv += ["--supernodes", "supernode-0", "supernode-1"]
    assert main(argv) == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.crt"]  # no key there
    expected = {
        "superlink": {"superlink", "localhost"},
        "supernode-0": {"supernode-0"},
        "supernode-1": {"supernode-1"},
    }
    for folder, names in expected.items():
        cert = x509.load_pem_x509_certificate((tmp_path / folder / "server.pem").read_bytes())
        cert.verify_directly_issued_by(ca)  # one CA signed them all
        assert certificate_hosts(tmp_path / folder / "server.pem") == names
        assert oct(os.stat(tmp_path / folder / "server.key").st_mode & 0o777) == "0o600"
    keys = {(tmp_path / f / "server.key").read_bytes() for f in expected}
    assert len(keys) == 3  # no service can present another's certificate
    assert main(["deploy", "certs", "--exist-ok", *argv[2:]]) == 0  # kept as they are
    assert main(["deploy", "certs", "--exist-ok", *argv[2:], "supernode-2"]) == 2
    assert "not valid for supernode-2" in capsys.readouterr().err


def test_node_keys_are_private_and_kept(tmp_path, capsys):
    from fedpriv.cli import main

    assert main(["deploy", "node-keys", "--out", str(tmp_path), "--nodes", "2"]) == 0
    key = tmp_path / "node-1" / "auth_key"
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert (tmp_path / "node-1" / "auth_key.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    before = key.read_bytes()
    assert main(["deploy", "node-keys", "--out", str(tmp_path), "--nodes", "2"]) == 2
    assert main(["deploy", "node-keys", "--exist-ok", "--out", str(tmp_path), "--nodes", "2"]) == 0
    assert key.read_bytes() == before

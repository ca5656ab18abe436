"""Credentials of a deployment: a private CA, TLS certificates, SuperNode key pairs."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedpriv.crypto.files import write_private, write_public

# Names the SuperLink is reached by: the compose service name and loopback.
DEFAULT_HOSTS = ("superlink", "localhost", "127.0.0.1")
VALID_DAYS = 365
CA_CERT, SERVER_CERT, SERVER_KEY = "ca.crt", "server.pem", "server.key"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedpriv deployment"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_hosts(cert_file: str | Path) -> set[str]:
    """The names (DNS and IP) a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    return set(dns) | {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


class CertificateAuthority:
    """A private CA that lives in memory only: whatever it signs is signed in one go.

    Its key is never written, so nothing can be signed by it after the provisioning that
    made it.
    """

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.validity = (
            now - datetime.timedelta(minutes=5),
            now + datetime.timedelta(days=VALID_DAYS),
        )
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.name = _name("fedpriv CA")
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.validity[0])
            .not_valid_after(self.validity[1])
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), False)
            .sign(self.key, hashes.SHA384())
        )

    def write_ca(self, path: Path) -> Path:
        """The CA certificate (0644): what every party that dials a service needs."""
        write_public(path, self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, out_dir: Path, hosts: tuple[str, ...]) -> tuple[Path, Path]:
        """A server certificate for ``hosts`` and its key (0600) in ``out_dir``."""
        key = ec.generate_private_key(ec.SECP384R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.validity[0])
            .not_valid_after(self.validity[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            # Key identifiers: strict verifiers (Python 3.13's default) require them.
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA384())
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        write_public(out_dir / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))
        write_private(out_dir / SERVER_KEY, _pem_key(key))
        return out_dir / SERVER_CERT, out_dir / SERVER_KEY


def make_certificates(
    out_dir: str | Path, hosts: tuple[str, ...] = DEFAULT_HOSTS
) -> dict[str, Path]:
    """Write a CA certificate and one certificate/key valid for ``hosts``, in one folder.

    The CA's private key is not kept: nothing else can be signed by it later. The private
    key is written 0600; the certificates 0644 (SuperNodes and the ``flwr`` CLI need only
    ``ca.crt``). The loopback deployment uses this layout (one machine, one user).

    Returns
    -------
    dict[str, Path]
        ``ca``, ``cert`` and ``key`` paths.

    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    authority = CertificateAuthority()
    cert, key = authority.issue(out, hosts)
    return {"ca": authority.write_ca(out / CA_CERT), "cert": cert, "key": key}


# The per-service layout's folders: the CA certificate alone, then one folder per service.
CA_FOLDER, SUPERLINK_FOLDER = "ca", "superlink"


def make_service_certificates(
    out_dir: str | Path, superlink_hosts: tuple[str, ...], supernodes: tuple[str, ...]
) -> dict[str, Path]:
    """The CA certificate and one certificate per service, each in its own folder.

    ``out_dir/ca/ca.crt``; ``out_dir/superlink/`` (valid for ``superlink_hosts``); one
    ``out_dir/<supernode>/`` per SuperNode, valid for its own name only (its Runtime API,
    which its ClientApp's SuperExec dials). A deployment mounts each folder only into the
    service that presents it, and ``ca/`` everywhere: no service can present another's.

    Returns
    -------
    dict[str, Path]
        Folder name -> folder.

    """
    out = Path(out_dir)
    authority = CertificateAuthority()
    (out / CA_FOLDER).mkdir(parents=True, exist_ok=True)
    authority.write_ca(out / CA_FOLDER / CA_CERT)
    folders = {CA_FOLDER: out / CA_FOLDER}
    for name, hosts in [(SUPERLINK_FOLDER, superlink_hosts), *((n, (n,)) for n in supernodes)]:
        authority.issue(out / name, hosts)
        folders[name] = out / name
    return folders


NODE_KEY, NODE_PUBLIC_KEY = "auth_key", "auth_key.pub"


def make_node_key(directory: Path) -> tuple[Path, Path]:
    """A SuperNode's ECDSA P-384 key pair in OpenSSH format (as ``ssh-keygen -t ecdsa -b 384``).

    Returns
    -------
    tuple[Path, Path]
        The private key (0600) and the public key to register.

    """
    key = ec.generate_private_key(ec.SECP384R1())
    private = directory / NODE_KEY
    public = directory / NODE_PUBLIC_KEY
    directory.mkdir(parents=True, exist_ok=True)
    write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    write_public(
        public,
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    )
    return private, public

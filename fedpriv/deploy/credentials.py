"""Credentials of a deployment: a private CA, TLS certificates, SuperNode key pairs, identities."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedpriv.crypto.files import write_private, write_public
from fedpriv.crypto.signing import IDENTITIES_DIR, ROSTER_FILE, Roster, SigningKey, load_roster
from fedpriv.errors import ConfigError, KeyMaterialError

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


def identity_file(partition: int) -> str:
    """The file name of partition ``partition``'s signing key (as ``identities/`` holds it)."""
    return f"party-{partition}.key"


def make_node_identities(
    nodes_dir: str | Path,
    roster_dir: str | Path,
    num_nodes: int,
    min_uploads: int,
    exist_ok: bool = False,
) -> Roster:
    """Each node's Ed25519 signing key in a folder of its own, and the roster of them all.

    ``nodes_dir/node-<p>/party-<p>.key`` (0600): partition ``p``'s key and nothing else, the
    folder a deployment mounts as that node's ``<key-dir>/identities/``;
    ``roster_dir/roster.json`` (0644, public): every node's public key and ``min_uploads``,
    beside an empty ``roster_dir/identities/`` (that mount's point in a read-only key
    directory). No folder holds two nodes' keys. The roster is written last: a provisioning
    cut short leaves none, and the next one starts over.

    Parameters
    ----------
    nodes_dir, roster_dir : str | Path
        Where the nodes' folders and the roster go.
    num_nodes : int
        Nodes (partitions ``0..num_nodes-1``).
    min_uploads : int
        The roster's fewest signers of one model (and signed uploads of one sum).
    exist_ok : bool
        Keep identities made before for the same nodes and minimum (a second
        ``docker compose up``).

    Raises
    ------
    ConfigError
        If identities exist and ``exist_ok`` is false, or they were made for other nodes,
        another minimum, or a node's key is missing or not the roster's.

    """
    nodes, roster_folder = Path(nodes_dir), Path(roster_dir)
    if num_nodes < 1 or not 1 <= min_uploads <= num_nodes:
        raise ConfigError(f"need 1 <= min-uploads <= nodes, got {min_uploads} of {num_nodes}")
    if (roster_folder / ROSTER_FILE).is_file():
        if not exist_ok:
            raise ConfigError(f"{roster_folder} already holds a roster; refusing to overwrite it")
        roster = _check_identities(nodes, roster_folder, num_nodes, min_uploads)
        (roster_folder / IDENTITIES_DIR).mkdir(mode=0o700, exist_ok=True)
        return roster
    (roster_folder / IDENTITIES_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = {}
    for partition in range(num_nodes):
        key, raw = SigningKey.generate()
        folder = nodes / f"node-{partition}"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(folder / identity_file(partition), raw)
        keys[partition] = key.public()
    roster = Roster(keys, min_uploads)
    write_public(roster_folder / ROSTER_FILE, json.dumps(roster.to_json(), indent=1).encode())
    return roster


def _check_identities(nodes: Path, roster_dir: Path, num_nodes: int, min_uploads: int) -> Roster:
    """The existing roster, if it is this deployment's and each node holds its own key."""
    start_over = "remove the identities (docker compose down -v) to make new ones"
    try:
        roster = load_roster(roster_dir)
    except (KeyMaterialError, ValueError) as err:
        raise ConfigError(f"{roster_dir / ROSTER_FILE}: {err}; {start_over}") from err
    if sorted(roster.keys) != list(range(num_nodes)):
        raise ConfigError(
            f"{roster_dir / ROSTER_FILE} was made for {len(roster.keys)} node(s), not "
            f"{num_nodes}; {start_over}"
        )
    if roster.min_uploads != min_uploads:
        raise ConfigError(
            f"{roster_dir / ROSTER_FILE} requires {roster.min_uploads} signer(s), not "
            f"{min_uploads}; {start_over}"
        )
    for partition, public in roster.keys.items():
        path = nodes / f"node-{partition}" / identity_file(partition)
        try:
            held = SigningKey(path.read_bytes()).public()
        except (OSError, KeyMaterialError) as err:
            raise ConfigError(f"{path}: {err}; {start_over}") from err
        if held != public:
            raise ConfigError(f"{path} is not the roster's key of node {partition}; {start_over}")
    return roster

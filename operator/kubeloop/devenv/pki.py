"""Certificates and keys of the local cluster: one CA, serving and client certificates.

Everything the control plane needs to run with real TLS and real authentication: the API
server's serving certificate (SANs for 127.0.0.1, the node bridge address and the first
service IP), client certificates whose subject is the identity RBAC and the Node authorizer
see (``O=system:masters`` for the admin, ``CN=system:node:<name>, O=system:nodes`` for the
node), the node's serving certificate, and the service-account signing key. Files are
written once and reused, so ``cluster-up`` twice keeps the same identities.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)
_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertPair:
    """Paths of a certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client certificate says its holder is."""

    file_stem: str
    common_name: str
    organization: str | None = None


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _key_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> _PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"{path}: unexpected key type {type(key).__name__}")
    return key


class ClusterPKI:
    """The certificate authority of one local cluster, kept in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = CertPair(directory / "ca.crt", directory / "ca.key")

    def ensure_ca(self) -> CertPair:
        """Create the CA unless it exists."""
        if self.ca.cert.exists() and self.ca.key.exists():
            return self.ca
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeloop-local-ca")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca.key, _key_pem(key))
        self.ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return self.ca

    def _issue(
        self,
        stem: str,
        subject: x509.Name,
        *,
        server: bool,
        client: bool,
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
    ) -> CertPair:
        pair = CertPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        if pair.cert.exists() and pair.key.exists():
            return pair
        self.ensure_ca()
        ca_key = _load_key(self.ca.key)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ] * client
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if dns_names or ip_addresses:
            names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_private(pair.key, _key_pem(key))
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair

    def serving(
        self,
        stem: str,
        common_name: str,
        *,
        dns_names: tuple[str, ...],
        ip_addresses: tuple[str, ...],
    ) -> CertPair:
        """A TLS serving certificate for the given names and addresses."""
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(
            stem, subject, server=True, client=False, dns_names=dns_names, ip_addresses=ip_addresses
        )

    def client(self, identity: ClientIdentity) -> CertPair:
        """A client certificate that authenticates as ``identity``."""
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name)]
        if identity.organization is not None:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.organization))
        return self._issue(identity.file_stem, x509.Name(attributes), server=False, client=True)

    def service_account_keys(self) -> CertPair:
        """RSA key pair that signs service-account tokens (``cert`` holds the public key)."""
        pair = CertPair(self.directory / "sa.pub", self.directory / "sa.key")
        if pair.cert.exists() and pair.key.exists():
            return pair
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pair.key, _key_pem(key))
        pair.cert.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pair

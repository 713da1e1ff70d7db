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
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kubeloop.certificates import PrivateKey, cert_pem, issue, make_ca, write_key

_VALIDITY = datetime.timedelta(days=365)


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


def _load_key(path: Path) -> PrivateKey:
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
        key, cert = make_ca("kubeloop-local-ca", _VALIDITY * 10)
        write_key(self.ca.key, key)
        self.ca.cert.write_bytes(cert_pem(cert))
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
        key, cert = issue(
            _load_key(self.ca.key),
            x509.load_pem_x509_certificate(self.ca.cert.read_bytes()),
            subject,
            validity=_VALIDITY,
            server=server,
            client=client,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
        )
        write_key(pair.key, key)
        pair.cert.write_bytes(cert_pem(cert))
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
        write_key(pair.key, key)
        pair.cert.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pair

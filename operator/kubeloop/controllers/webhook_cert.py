"""A serving certificate for the admission webhooks, made by the operator pod itself.

In a cluster the API server calls the webhook at the pod's IP, which nobody knows before the
pod starts, so no certificate can be made in advance for it (not by Helm, not by a GitOps
repository). The operator therefore makes a CA and a serving certificate for its own address
at start, in memory and in a private temporary directory, and Kopf writes the CA into the
webhook configurations' ``caBundle``. Nothing is stored in the cluster: a restarted pod makes
new ones and the configurations follow.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class WebhookCertificate:
    """Paths of the serving certificate, its key, and the CA that signed it."""

    certfile: Path
    keyfile: Path
    cafile: Path


def _subject_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_webhook_certificate(host: str, directory: Path) -> WebhookCertificate:
    """A fresh CA and a certificate for ``host`` (an IP or a DNS name), written to ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeloop-operator-webhook-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName([_subject_name(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = WebhookCertificate(
        certfile=directory / "tls.crt", keyfile=directory / "tls.key", cafile=directory / "ca.crt"
    )
    paths.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.cafile.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.keyfile.touch(mode=0o600)
    paths.keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths

"""The local cluster's PKI: identities RBAC sees, SANs clients verify, files reused."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeloop.devenv.pki import ClientIdentity, ClusterPKI


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_client_certificate_carries_the_rbac_identity(tmp_path: Path) -> None:
    pki = ClusterPKI(tmp_path)
    pair = pki.client(ClientIdentity("node", "system:node:kubeloop-node", "system:nodes"))
    cert = _load(pair.cert)
    assert (
        cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        == "system:node:kubeloop-node"
    )
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca = _load(pki.ca.cert)
    cert.verify_directly_issued_by(ca)


def test_serving_certificate_names_the_addresses(tmp_path: Path) -> None:
    pki = ClusterPKI(tmp_path)
    pair = pki.serving(
        "apiserver",
        "kube-apiserver",
        dns_names=("kubernetes.default.svc",),
        ip_addresses=("10.88.0.1", "10.96.0.1"),
    )
    sans = _load(pair.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["kubernetes.default.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.88.0.1"),
        ipaddress.ip_address("10.96.0.1"),
    ]


def test_keys_are_private_and_files_are_reused(tmp_path: Path) -> None:
    pki = ClusterPKI(tmp_path)
    first = pki.client(ClientIdentity("admin", "kubeloop-admin", "system:masters"))
    again = pki.client(ClientIdentity("admin", "kubeloop-admin", "system:masters"))
    assert first == again
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.ca.key.stat().st_mode) == 0o600
    sa = pki.service_account_keys()
    assert b"PUBLIC KEY" in sa.cert.read_bytes()
    assert stat.S_IMODE(sa.key.stat().st_mode) == 0o600

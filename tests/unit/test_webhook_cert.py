"""The operator's own webhook certificate: signed by its CA, for the address it serves on."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from kubeloop.controllers.webhook_cert import make_webhook_certificate
from kubeloop.settings import OperatorSettings


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.88.0.17", x509.IPAddress(ipaddress.ip_address("10.88.0.17"))),
        (
            "kubeloop-operator.kubeloop-system.svc",
            x509.DNSName("kubeloop-operator.kubeloop-system.svc"),
        ),
    ],
)
def test_the_certificate_names_the_host_and_is_signed_by_the_ca(
    tmp_path: Path, host: str, expected: x509.GeneralName
) -> None:
    made = make_webhook_certificate(host, tmp_path / "certs")
    cert = x509.load_pem_x509_certificate(made.certfile.read_bytes())
    ca = x509.load_pem_x509_certificate(made.cafile.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(names) == [expected]
    cert.verify_directly_issued_by(ca)  # raises when the CA did not sign it
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # What a TLS server does with the files: the key matches the certificate.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(made.certfile, made.keyfile)
    assert stat.S_IMODE(made.keyfile.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "certs").stat().st_mode) == 0o700


def test_each_start_makes_a_new_ca(tmp_path: Path) -> None:
    first = make_webhook_certificate("10.0.0.1", tmp_path / "a")
    second = make_webhook_certificate("10.0.0.1", tmp_path / "b")
    assert first.cafile.read_bytes() != second.cafile.read_bytes()


def test_a_certificate_without_its_key_is_refused_naming_both_variables() -> None:
    with pytest.raises(ValueError, match="KUBELOOP_WEBHOOK_CERTFILE and KUBELOOP_WEBHOOK_KEYFILE"):
        OperatorSettings(webhook_host="10.0.0.1", webhook_certfile="/tls/tls.crt")
    assert OperatorSettings(webhook_host="10.0.0.1").webhook_certfile is None

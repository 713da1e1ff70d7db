"""A serving certificate for the admission webhooks, made by the operator pod itself.

In a cluster the API server calls the webhook at the pod's IP, which nobody knows before the
pod starts, so no certificate can be made in advance for it (not by Helm, not by a GitOps
repository). The operator therefore makes a CA and a serving certificate for its own address
at start, in a private temporary directory, and Kopf writes the CA into the webhook
configurations' ``caBundle``. Nothing is stored in the cluster: a restarted pod makes new
ones and the configurations follow.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from kubeloop.certificates import cert_pem, common_name, issue, make_ca, write_key

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class WebhookCertificate:
    """Paths of the serving certificate, its key, and the CA that signed it."""

    certfile: Path
    keyfile: Path
    cafile: Path


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def make_webhook_certificate(host: str, directory: Path) -> WebhookCertificate:
    """A fresh CA and a certificate for ``host`` (an IP or a DNS name), written to ``directory``."""
    ca_key, ca = make_ca("kubeloop-operator-webhook-ca", _VALIDITY, path_length=0)
    by_ip = _is_ip(host)
    key, cert = issue(
        ca_key,
        ca,
        common_name(host),
        validity=_VALIDITY,
        server=True,
        client=False,
        dns_names=() if by_ip else (host,),
        ip_addresses=(host,) if by_ip else (),
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = WebhookCertificate(
        certfile=directory / "tls.crt", keyfile=directory / "tls.key", cafile=directory / "ca.crt"
    )
    paths.certfile.write_bytes(cert_pem(cert))
    paths.cafile.write_bytes(cert_pem(ca))
    write_key(paths.keyfile, key)
    return paths

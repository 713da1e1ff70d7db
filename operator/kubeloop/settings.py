"""The operator's settings: read once at start from ``KUBELOOP_*`` variables, then passed along.

Everything environment-specific lives here (which namespaces to watch, how workloads reach
S3, which image or command runs them), so controllers and builders never read the
environment themselves.
"""

from __future__ import annotations

import socket
import uuid

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubeloop.resources.common import WorkloadSettings


class OperatorSettings(BaseSettings):
    """Settings of ``kubeloop operator``."""

    model_config = SettingsConfigDict(env_prefix="KUBELOOP_", extra="ignore")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch; empty means the whole cluster.",
    )
    workload_image: str = Field(
        default="ghcr.io/kubeloop/kubeloop:0.1.0",
        description="Image of profiling and training pods.",
    )
    workload_command: list[str] = Field(
        default_factory=lambda: ["kubeloop"],
        description="Entrypoint of the workload pods (an absolute path on the local cluster).",
    )
    workload_s3_endpoint: str = Field(
        default="http://minio.kubeloop-system.svc:9000",
        description="S3 endpoint as the workload pods reach it.",
    )
    artifact_bucket: str = Field(
        default="kubeloop", description="Bucket for snapshots and artifacts."
    )
    s3_secret: str = Field(
        default="kubeloop-s3",
        description="Secret (in each watched namespace) with accessKey and secretKey for workloads.",
    )
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    webhook_host: str | None = Field(
        default=None,
        description="Address the API server calls for admission webhooks; unset turns them off.",
    )
    webhook_port: int = Field(
        default=9443, ge=1, le=65535, description="Port of the webhook server."
    )
    webhook_certfile: str | None = Field(
        default=None,
        description="Serving certificate (PEM); unset: the operator makes a CA and one at start.",
    )
    webhook_keyfile: str | None = Field(default=None, description="Its private key (PEM).")
    webhook_cafile: str | None = Field(
        default=None, description="CA that signed the certificate (the API server's caBundle)."
    )
    metrics_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /metrics; 0 turns it off."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address /metrics listens on (0.0.0.0 in a pod, for Prometheus and probes).",
    )
    leader_election: bool = Field(
        default=False,
        description="Run the controllers only while holding a Lease (needed for 2+ replicas).",
    )
    leader_election_namespace: str | None = Field(
        default=None, description="Namespace of the Lease (the operator's own, in a pod)."
    )
    leader_election_lease: str = Field(
        default="kubeloop-operator", description="Name of the Lease the replicas compete for."
    )
    leader_election_identity: str = Field(
        default_factory=lambda: f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        description="This replica's name in the Lease (pod name plus a random suffix).",
    )
    leader_election_lease_seconds: int = Field(
        default=15,
        ge=3,
        le=300,
        description="How long a standby waits for an unrenewed Lease before taking it.",
    )

    @model_validator(mode="after")
    def _certificate_needs_its_key(self) -> OperatorSettings:
        if bool(self.webhook_certfile) != bool(self.webhook_keyfile):
            raise ValueError(
                "KUBELOOP_WEBHOOK_CERTFILE and KUBELOOP_WEBHOOK_KEYFILE go together: set both, "
                "or neither to have the operator make its own certificate"
            )
        return self

    @model_validator(mode="after")
    def _lease_needs_a_namespace(self) -> OperatorSettings:
        if self.leader_election and not self.leader_election_namespace:
            raise ValueError(
                "KUBELOOP_LEADER_ELECTION is on but KUBELOOP_LEADER_ELECTION_NAMESPACE is not "
                "set (the namespace of the Lease, normally the operator pod's own)"
            )
        return self

    def workloads(self) -> WorkloadSettings:
        """What the builders need to make workload pods."""
        return WorkloadSettings(
            image=self.workload_image,
            command=tuple(self.workload_command),
            s3_endpoint=self.workload_s3_endpoint,
            s3_bucket=self.artifact_bucket,
            s3_secret=self.s3_secret,
            s3_region=self.s3_region,
        )

"""``kubeloop operator``: configure Kopf, register the controllers, serve /metrics, run.

Kopf keeps its progress and diff-base in annotations under ``kubeloop.io`` (never in status,
which belongs to the API). Kopf runs standalone (no peering objects): with
``KUBELOOP_LEADER_ELECTION`` on, a replica starts it only once it holds the Lease
(``leader.py``), so any number of replicas can run and exactly one acts.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server
from pydantic import ValidationError

from kubeloop import API_GROUP
from kubeloop.controllers import admission, dataset, deployment, metrics, modelversion, trainingrun
from kubeloop.controllers.leader import LeaderElector, LeaseTimings
from kubeloop.controllers.webhook_cert import make_webhook_certificate
from kubeloop.k8s import KubernetesAdapter
from kubeloop.settings import OperatorSettings
from kubeloop.storage import ObjectStore, S3Settings


def _load_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _object_store() -> ObjectStore | None:
    """The operator's own S3 access (KUBELOOP_S3_*), to read what trainers wrote."""
    try:
        return ObjectStore(S3Settings())
    except ValidationError as error:
        fields = ", ".join(str(e["loc"][0]) for e in error.errors())
        logging.getLogger("kubeloop").warning(
            "no S3 settings (%s): models cannot be registered until KUBELOOP_S3_* is set", fields
        )
        return None


def _webhook_server(settings: OperatorSettings, host: str) -> kopf.WebhookServer:
    """The admission webhook server at ``host``, with the configured certificate or one made now."""
    if settings.webhook_certfile and settings.webhook_keyfile:
        certfile, keyfile = settings.webhook_certfile, settings.webhook_keyfile
        cafile = settings.webhook_cafile
    else:
        made = make_webhook_certificate(host, Path(tempfile.mkdtemp(prefix="kubeloop-webhook-")))
        certfile, keyfile, cafile = str(made.certfile), str(made.keyfile), str(made.cafile)
    return kopf.WebhookServer(
        addr=host,
        port=settings.webhook_port,
        host=host,
        certfile=certfile,
        pkeyfile=keyfile,
        cafile=cafile,
    )


def _elected(settings: OperatorSettings, adapter: KubernetesAdapter) -> LeaderElector | None:
    """The Lease held for this replica, or None when leader election is off."""
    namespace = settings.leader_election_namespace  # set whenever election is on (settings)
    if not settings.leader_election or namespace is None:
        return None
    elector = LeaderElector(
        adapter,
        namespace=namespace,
        name=settings.leader_election_lease,
        identity=settings.leader_election_identity,
        timings=LeaseTimings.for_duration(settings.leader_election_lease_seconds),
    )
    elector.acquire()
    elector.start_renewing()
    return elector


def run(settings: OperatorSettings) -> int:
    """Run the operator until it is stopped."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    adapter = KubernetesAdapter(_load_client())

    operator_settings = settings

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=API_GROUP, key="last-handled-configuration"
        )
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        if operator_settings.webhook_host:
            # The API server calls us directly; Kopf keeps the webhook configurations in step.
            settings.admission.server = _webhook_server(
                operator_settings, operator_settings.webhook_host
            )
            settings.admission.managed = API_GROUP

    operator_metrics = metrics.OperatorMetrics()
    metrics.register(operator_metrics)
    dataset.register(settings, adapter, operator_metrics)
    store = _object_store()
    trainingrun.register(settings, adapter, store, operator_metrics)
    modelversion.register(adapter, store, operator_metrics)
    deployment.register(settings, adapter, operator_metrics, store)
    if settings.webhook_host:
        admission.register()
    else:
        logging.getLogger("kubeloop").warning(
            "KUBELOOP_WEBHOOK_HOST is not set: stage rules are not enforced at admission"
        )
    if settings.metrics_port:
        # Before the election: a standby is alive too (its probes and metrics answer).
        start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=operator_metrics.registry
        )
    elector = _elected(settings, adapter)
    operator_metrics.leader.set(1)
    try:
        kopf.run(
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            # Kopf would otherwise name itself after the user (getpass), which fails for a
            # uid without a passwd entry, as 65532 in the image. (Its parameter type is a
            # NewType of str that kopf does not export.)
            identity=cast(Any, settings.leader_election_identity),
        )
    finally:
        if elector is not None:
            elector.release()
    return 0

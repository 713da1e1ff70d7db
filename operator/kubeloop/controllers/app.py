"""``kubeloop operator``: configure Kopf, register the controllers, serve /metrics, run.

Kopf keeps its progress and diff-base in annotations under ``kubeloop.io`` (never in status,
which belongs to the API). The operator runs standalone (no peering objects needed); more
than one replica needs leader election, which a later milestone adds with the Helm chart.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server
from pydantic import ValidationError

from kubeloop import API_GROUP
from kubeloop.controllers import admission, dataset, deployment, metrics, modelversion, trainingrun
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
            settings.admission.server = kopf.WebhookServer(
                addr=operator_settings.webhook_host,
                port=operator_settings.webhook_port,
                host=operator_settings.webhook_host,
                certfile=operator_settings.webhook_certfile,
                pkeyfile=operator_settings.webhook_keyfile,
                cafile=operator_settings.webhook_cafile,
            )
            settings.admission.managed = API_GROUP

    operator_metrics = metrics.OperatorMetrics()
    metrics.register(operator_metrics)
    dataset.register(settings, adapter, operator_metrics)
    store = _object_store()
    trainingrun.register(settings, adapter, store, operator_metrics)
    modelversion.register(adapter, store, operator_metrics)
    deployment.register(settings, adapter, operator_metrics)
    if settings.webhook_host:
        admission.register()
    else:
        logging.getLogger("kubeloop").warning(
            "KUBELOOP_WEBHOOK_HOST is not set: stage rules are not enforced at admission"
        )
    if settings.metrics_port:
        start_http_server(
            settings.metrics_port, addr="127.0.0.1", registry=operator_metrics.registry
        )
    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
    )
    return 0

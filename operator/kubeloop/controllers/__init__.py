"""Kopf wiring, one module per kind; every handler is parse → read → pure build → apply → pure status.

Handlers are thin: the decisions live in ``kubeloop.resources`` (what children look like) and
``kubeloop.status`` (what the status becomes); the API calls go through ``kubeloop.k8s``.
``app`` configures Kopf (its bookkeeping in ``kubeloop.io`` annotations) and runs it.
"""

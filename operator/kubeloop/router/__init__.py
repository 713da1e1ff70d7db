"""The router (``kubeloop route``): NGINX proxies, a small controller renders its configuration.

The controller watches one kubeloop Deployment's traffic split and the per-version
EndpointSlices, renders ``nginx.conf``, reloads NGINX gracefully, and replays shadow copies from
a side channel after the client has its answer. Data plane: no Kopf, no operator code.
"""

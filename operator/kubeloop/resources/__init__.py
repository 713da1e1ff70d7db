"""Pure builders of the Kubernetes objects the operator creates (kubebuilder's "desired state").

One module per kind (``dataset.py`` builds a Dataset's profiling Job, ``trainingrun.py`` a
TrainingRun's Indexed Job) plus ``common.py`` for what every workload shares: labels,
owner references, the Pod Security ``restricted`` security context, S3 settings taken from
a Secret. Builders take parsed models and settings and return plain dicts ready for
server-side apply; they never talk to the API server, so they are unit-tested with tables.
"""

"""CRD generation: the pydantic models in ``kubeloop.api`` become ``crds/*.yaml``.

``schema`` rewrites pydantic's JSON Schema into a structural OpenAPI v3 schema, ``crd``
assembles the CustomResourceDefinition around it, ``structural`` checks a schema against
the rules the API server enforces, and ``render`` produces the deterministic YAML that
``python -m kubeloop.crdgen`` writes. All of it is pure: no cluster, no files, except in
``__main__``.
"""

"""Local development environment: real processes kubeloop needs, started on 127.0.0.1.

Used by ``make s3-up``/``make s3-down``, the demo and the component tests, never by the
operator or the data plane in a cluster. ``seaweedfs`` runs the S3 server (SeaweedFS).
"""

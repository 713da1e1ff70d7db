"""The inference server (``kubeloop serve``): one ONNX ModelVersion behind Open Inference
Protocol V2 REST and a plain ``/predict``.

Data plane: it reads its artifact from S3, verifies the digest, and never imports the operator,
Kopf or the Kubernetes client. Nothing here unpickles anything.
"""

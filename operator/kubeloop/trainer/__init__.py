"""The trainer: one TrainingRun trial from a pinned Parquet snapshot to parity-checked ONNX.

Data plane: it runs in the pods of a TrainingRun's Indexed Job (``kubeloop train``), talks
only to object storage, and never imports Kopf, the Kubernetes client or the controllers.

* ``config`` -- ``TrialConfig``, the JSON the operator hands each pod;
* ``search`` -- the search plan: the parameters of trial *i*, a pure function of the spec;
* ``data`` -- snapshot reading, column roles, the model frame, the seeded split;
* ``model`` -- the allowlisted estimator, parameter validation, the one sklearn Pipeline;
* ``metrics`` -- quality, fairness and latency math (pure);
* ``evaluate`` -- predictions, per-slice metrics, fairness blocks, permutation importance;
* ``onnx_export`` -- skl2onnx export, the parity check, single-row latency;
* ``report``, ``card`` -- ``report.html`` (inline PNG plots) and ``model-card.md``;
* ``train`` -- ``run_trial``: the steps in order and the artifact upload;
* ``cli`` -- ``main``: config and settings from the environment, the termination message;
* ``errors`` -- the failure reasons the TrainingRun status shows.

Nothing here pickles or unpickles anything: the model leaves the trainer as ONNX only.

This ``__init__`` imports nothing on purpose: the operator needs ``search.trial_count`` and
``config.TrialConfig`` (pydantic and the API models only) without paying for scikit-learn,
ONNX Runtime and matplotlib. Import ``run_trial`` from ``kubeloop.trainer.train``.
"""

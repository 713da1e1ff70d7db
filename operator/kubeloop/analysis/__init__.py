"""Model-aware canary analysis and drift: from the serving pods' ``/metrics`` text to a verdict.

Pure functions only (no HTTP, no Kubernetes): the controller scrapes each live version's pods,
hands the texts here, keeps the previous scrape, and writes the returned
:class:`~kubeloop.api.deployment.AnalysisRun` into status.

* :mod:`.exposition` parses Prometheus text into per-pod samples of the server's metrics;
* :mod:`.window` turns two scrapes into one window per version (counter resets, pods coming
  and going);
* :mod:`.stats` holds the maths (two-proportion z-tests, histogram quantiles, Jensen-Shannon);
* :mod:`.checks` applies a Deployment's ``analysis`` block and combines the verdicts.

The drift monitor's maths lives here too, on the same scraped pages:

* :mod:`.drift_counts` reads a page's feature, prediction and feedback counts and windows them;
* :mod:`.drift` holds the drift measures (PSI, Jensen-Shannon, KS, chi-square, L-infinity);
* :mod:`.drift_check` folds the training profile onto the server's bins and scores a window.
"""

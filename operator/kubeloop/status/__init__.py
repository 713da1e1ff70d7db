"""Pure status functions: what an object's status becomes after something was observed.

One module per kind (``dataset.py`` turns a profiling Job's answer into a DatasetStatus)
plus ``conditions.py`` for the Kubernetes condition conventions. They take the current status
and the observation and return the new status; no I/O, so they are tested with tables.
"""

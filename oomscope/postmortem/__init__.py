"""The post-mortem stage, after record/ and import: a kill's analysis, its post-mortem and the
output folder's index (stage.py), the worker process record has them done in (worker.py), and how
record hands a capture on (finisher.py). Nothing here is imported on import of the package: the
recorder imports finisher.py alone, never pandas or jinja2."""

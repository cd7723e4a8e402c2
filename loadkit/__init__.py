"""loadkit: decide whether a canary release is safe.

Keep this module free of heavy imports: `loadkit --help` must not import locust, kubernetes or chaoslib.
"""

__version__ = "0.1.0"

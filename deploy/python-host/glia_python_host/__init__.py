"""glia_python_host: runs an unmodified Synapse module out of process and serves its callbacks
to glia, as a child of `glia serve` (over a pipe) or on its own (over NATS).

Run it as `python -m glia_python_host` or `glia-python-host`; see the README.
"""

__version__ = "0.1.0"

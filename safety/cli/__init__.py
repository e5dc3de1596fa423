"""The ``drivegate`` command line: one module per command, wired in :mod:`safety.cli.main`."""

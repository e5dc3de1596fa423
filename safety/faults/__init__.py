"""Fault injection: recorded drives with faults at given times, to prove the engine fails closed.

:func:`~safety.faults.spec.parse_fault` reads ``--fault`` specifications; an
:class:`~safety.faults.inject.Injector` applies them to a frame stream, using the vehicle
profile to find messages, signals and their end-to-end protection.  ``drivegate inject`` is
the command; ``tests/faults`` replays the demo drive with every kind.
"""

from safety.faults.inject import Injector
from safety.faults.spec import KINDS, FaultSpec, parse_fault, parse_faults

__all__ = ["KINDS", "FaultSpec", "Injector", "parse_fault", "parse_faults"]

"""DriveGate: decides, at every moment of a drive, what an in-car assistant may do.

CAN frames -> vehicle state -> compiled YAML policy -> decision.  The public API::

    from safety import Engine
    engine = Engine.load(vehicle="dbc/demo_sedan.yaml", policy="policies/default.yaml")
    can.Notifier(bus, [engine.on_frame])
    decision = engine.decide({"kind": "notification", "category": "message",
                              "modality": "visual", "content": "text", "priority": "normal"})
"""

from .client import AsyncClient, Client
from .decision import Decision, Outcome
from .engine import Engine, EngineView
from .errors import (
    DbcError,
    DriveGateError,
    LoadError,
    Location,
    LogFormatError,
    PolicyError,
    ProfileError,
    RequestError,
)
from .policy import CompiledPolicy, load_policy
from .profile import VehicleProfile, load_profile
from .request import REQUEST_FIELDS, validate_request
from .signals import CANONICAL_SIGNALS
from .state import StateSnapshot

__all__ = [
    "CANONICAL_SIGNALS",
    "REQUEST_FIELDS",
    "AsyncClient",
    "Client",
    "CompiledPolicy",
    "DbcError",
    "Decision",
    "DriveGateError",
    "Engine",
    "EngineView",
    "LoadError",
    "Location",
    "LogFormatError",
    "Outcome",
    "PolicyError",
    "ProfileError",
    "RequestError",
    "StateSnapshot",
    "VehicleProfile",
    "load_policy",
    "load_profile",
    "validate_request",
]
__version__ = "0.1.0"

"""DriveGate: decides, at every moment of a drive, what an in-car assistant may do.

CAN frames -> vehicle state -> compiled YAML policy -> decision.  The public API::

    from safety import Engine
    engine = Engine.load(vehicle="demo-sedan", policy="default")
    can.Notifier(bus, [engine.on_frame])
    decision = engine.decide({"kind": "notification", "category": "message",
                              "modality": "visual", "content": "text", "priority": "normal"})

Names are imported when first used (as httpx does), so ``from safety import Client`` in a
head-unit process that only asks the decision service loads neither python-can, cantools,
cryptography nor the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.  A test keeps this, __all__ and the TYPE_CHECKING
# imports below in agreement.
_EXPORTS: dict[str, str] = {
    "AsyncClient": "safety.client.aio",
    "Client": "safety.client.client",
    "Fallback": "safety.client.base",
    "Decision": "safety.model.decision",
    "Outcome": "safety.model.decision",
    "REQUEST_FIELDS": "safety.model.request",
    "validate_request": "safety.model.request",
    "RESERVED_RULE_IDS": "safety.model.rules",
    "AnalysisLimitError": "safety.errors",
    "DbcError": "safety.errors",
    "DriveGateError": "safety.errors",
    "FaultSpecError": "safety.errors",
    "LoadError": "safety.errors",
    "Location": "safety.errors",
    "LogFormatError": "safety.errors",
    "LogInUseError": "safety.errors",
    "PolicyCheckError": "safety.errors",
    "PolicyError": "safety.errors",
    "PolicyTestError": "safety.errors",
    "ProfileError": "safety.errors",
    "RequestError": "safety.errors",
    "ServiceError": "safety.errors",
    "SignatureError": "safety.errors",
    "TimeLimitError": "safety.errors",
    "CANONICAL_SIGNALS": "safety.vehicle.signals",
    "DrivingState": "safety.vehicle.state",
    "StateSnapshot": "safety.vehicle.state",
    "Workload": "safety.vehicle.state",
    "VehicleProfile": "safety.vehicle.profile",
    "load_profile": "safety.vehicle.profile",
    "CompiledPolicy": "safety.policy",
    "load_policy": "safety.policy",
    "DecisionPipeline": "safety.decide.pipeline",
    "DecisionLog": "safety.audit.decisionlog",
    "Engine": "safety.engine.engine",
    "EngineView": "safety.engine.engine",
}

__all__ = [
    "CANONICAL_SIGNALS",
    "REQUEST_FIELDS",
    "RESERVED_RULE_IDS",
    "AnalysisLimitError",
    "AsyncClient",
    "Client",
    "CompiledPolicy",
    "DbcError",
    "Decision",
    "DecisionLog",
    "DecisionPipeline",
    "DriveGateError",
    "DrivingState",
    "Engine",
    "EngineView",
    "Fallback",
    "FaultSpecError",
    "LoadError",
    "Location",
    "LogFormatError",
    "LogInUseError",
    "Outcome",
    "PolicyCheckError",
    "PolicyError",
    "PolicyTestError",
    "ProfileError",
    "RequestError",
    "ServiceError",
    "SignatureError",
    "StateSnapshot",
    "TimeLimitError",
    "VehicleProfile",
    "Workload",
    "load_policy",
    "load_profile",
    "validate_request",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on first use
    from safety.audit.decisionlog import DecisionLog
    from safety.client.aio import AsyncClient
    from safety.client.base import Fallback
    from safety.client.client import Client
    from safety.decide.pipeline import DecisionPipeline
    from safety.engine.engine import Engine, EngineView
    from safety.errors import (
        AnalysisLimitError,
        DbcError,
        DriveGateError,
        FaultSpecError,
        LoadError,
        Location,
        LogFormatError,
        LogInUseError,
        PolicyCheckError,
        PolicyError,
        PolicyTestError,
        ProfileError,
        RequestError,
        ServiceError,
        SignatureError,
        TimeLimitError,
    )
    from safety.model.decision import Decision, Outcome
    from safety.model.request import REQUEST_FIELDS, validate_request
    from safety.model.rules import RESERVED_RULE_IDS
    from safety.policy import CompiledPolicy, load_policy
    from safety.vehicle.profile import VehicleProfile, load_profile
    from safety.vehicle.signals import CANONICAL_SIGNALS
    from safety.vehicle.state import DrivingState, StateSnapshot, Workload


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'safety' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

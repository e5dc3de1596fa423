"""JSON Schemas of policy files and vehicle profiles, shipped in the package.

``drivegate schema policy|vehicle`` prints one, so that YAML editors complete and check
keys: save it (``drivegate schema policy > policy.schema.json``) and point
yaml-language-server at it, e.g. with a first line
``# yaml-language-server: $schema=policy.schema.json``.  The schema checks structure
(keys, types, values, operators per field kind, constraints per outcome); the loader
checks everything the schema does and more (thresholds in order, bands, duplicate ids,
DBC names), which ``drivegate lint`` reports.  Tests keep the two in agreement.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMAS = ("policy", "vehicle")


def schema_text(name: str) -> str:
    """The JSON text of schema ``name`` (``policy`` or ``vehicle``)."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {name!r}; expected one of: {', '.join(SCHEMAS)}")
    # The schemas folder is read as a namespace package of its own: that works from a wheel, a
    # source tree and an editable install alike (where "safety" itself may be a namespace
    # whose path holds the editable finder's placeholder, which resources cannot read).
    return resources.files("safety.schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """Schema ``name`` as a dict."""
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema

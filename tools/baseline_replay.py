#!/usr/bin/env python3
"""The replay a user would write without DriveGate: python-can reads, cantools decodes.

    python tools/baseline_replay.py LOG --vehicle dbc/demo_sedan.yaml

``can.LogReader`` reads every frame of the log; every frame of a message the vehicle profile
maps is decoded with cantools ``Database.decode_message``; the latest value of each decoded
signal is kept.  No vehicle state, no policy: this is the floor a replay engine is measured
against (``tools/bench_replay.py``).  Prints the frames read and decoded and the signals seen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import can
import cantools
import yaml


def mapped_ids(profile_path: Path) -> tuple[Path, set[int]]:
    """The DBC file and the frame ids the profile's signals come from (by message name or id)."""
    profile = yaml.safe_load(profile_path.read_text(encoding="utf-8"))
    dbc = (profile_path.parent / profile["dbc"]).resolve()
    db = cantools.database.load_file(str(dbc), strict=False)
    ids = set()
    for entry in profile["signals"].values():
        message = entry["message"]
        ids.add(message if isinstance(message, int) else db.get_message_by_name(message).frame_id)
    return dbc, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--vehicle", required=True, type=Path, help="the vehicle profile (YAML) naming the messages")
    args = parser.parse_args(argv)
    dbc, ids = mapped_ids(args.vehicle)
    db = cantools.database.load_file(str(dbc), strict=False)
    latest: dict[str, Any] = {}
    read = decoded = 0
    for msg in can.LogReader(args.log):
        read += 1
        if msg.arbitration_id in ids and not msg.is_error_frame and not msg.is_remote_frame:
            latest.update(db.decode_message(msg.arbitration_id, msg.data))
            decoded += 1
    print(f"frames read: {read}, decoded: {decoded}, signals: {len(latest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

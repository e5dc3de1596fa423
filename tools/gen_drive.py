#!/usr/bin/env python3
"""Write the demo sedan's scripted drive as a candump ``-L`` log: ``drivegate gen-drive`` as a script.

    python tools/gen_drive.py --out demo.log
    python tools/gen_drive.py --out bench.log.gz --frames 1000000

The options and the output are those of ``drivegate gen-drive`` (:mod:`safety.cli.gen_drive`,
which holds the code); this wrapper runs from a checkout without installing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from a checkout without installing: the package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safety.cli.gen_drive import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

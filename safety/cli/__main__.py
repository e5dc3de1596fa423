"""``python -m safety.cli``: the ``drivegate`` command."""

from safety.cli.main import main

raise SystemExit(main())

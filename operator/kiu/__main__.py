"""``python -m kiu`` is the same as the ``kiu`` command."""

from kiu import cli

raise SystemExit(cli.main())

"""``python -m bulksync`` is the same as the ``bulksync`` command."""

from bulksync.cli import main

raise SystemExit(main())

"""``python -m bulksync`` is the same as the ``bulksync`` command."""

from bulksync.cli import console

raise SystemExit(console())

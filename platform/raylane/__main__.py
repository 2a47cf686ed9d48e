"""``python -m raylane`` runs the CLI."""

from raylane.cli import entrypoint

entrypoint()

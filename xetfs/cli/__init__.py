"""Command-line adapters: each subcommand module defines ``configure(parser)`` and ``run(args) -> int``."""

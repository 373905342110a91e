"""Command-line adapters: each ``*_cmd`` module defines ``configure(parser)`` and ``run(args) -> int``.

Commands are thin: parse, call the library, print. They never import each other; what two share lives in the
library or in a helper module that is not a command (``progress``). May import every product package.
"""

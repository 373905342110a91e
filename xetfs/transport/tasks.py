"""Structured-concurrency helpers for the client (docs/architecture.md, "Threads").

trio nurseries wrap every error of their children in an ``ExceptionGroup``. Callers of the Hub/CAS client,
the upload pipeline and the CLI want the one ``XetError`` that happened (for one-line messages, errno
mapping and retry classification), so ``single_error`` re-raises the first leaf of a group and logs the
others; a group holding a ``KeyboardInterrupt`` or ``SystemExit`` yields that one first.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise the first error of an exception group (nested groups flattened) as itself."""
    try:
        yield
    except BaseExceptionGroup as group:
        found = leaves(group)
        found.sort(key=lambda e: not isinstance(e, (KeyboardInterrupt, SystemExit)))
        for other in found[1:]:
            log.debug("also failed: %r", other)
        raise found[0] from None

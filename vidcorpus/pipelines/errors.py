"""The message a user should read when a build fails inside a Beam step: the original
exception's, once, without Beam's wrapping.

In one process Beam re-raises the step's exception with ` [while running '<step>']` appended
and the original as its cause, or, for exceptions it cannot rebuild (OSError), as a RuntimeError
reading `OSError: message`; from worker processes it arrives as a RuntimeError whose text is the
worker's whole traceback, whose last unindented `Error: message` line is the original.
"""

from __future__ import annotations

import re

WHILE_RUNNING = re.compile(r"\s*\[while running '[^']*'\]")
EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Unavailable|Exists|Interrupt|Refused)\w*): (.+)$")


def original_message(exc: BaseException) -> str:
    """`ErrorClass: message` of the exception at the root of `exc`, Beam's wrapping removed."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = WHILE_RUNNING.sub("", str(root)).strip()
    if isinstance(root, RuntimeError):  # Beam's wrapper: a worker traceback or "Error: message"
        found = [m for line in text.splitlines() if (m := EXCEPTION_LINE.match(line))]
        if found:
            name, message = found[-1].groups()
            return f"{name}: {message.strip()}"
    return f"{type(root).__name__}: {text}"

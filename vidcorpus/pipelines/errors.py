"""The message a user should read when a build fails inside a Beam step: the original
exception's, once, without Beam's wrapping.

In one process Beam re-raises the step's exception with ` [while running '<step>']` appended
and the original as its cause; from worker processes it arrives as a RuntimeError whose text is
the worker's whole traceback, whose last unindented `Error: message` line is the original.
"""

from __future__ import annotations

import re

WHILE_RUNNING = re.compile(r"\s*\[while running '[^']*'\]")
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Unavailable|Exists|Interrupt|Refused)\w*): (.+)$")


def original_message(exc: BaseException) -> str:
    """`ErrorClass: message` of the exception at the root of `exc`, Beam's wrapping removed."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root)
    if "Traceback (most recent call last)" in text:
        found = [m for line in text.splitlines() if (m := EXCEPTION_LINE.match(line))]
        if found:
            name, message = found[-1].groups()
            return f"{name}: {WHILE_RUNNING.sub('', message).strip()}"
    return f"{type(root).__name__}: {WHILE_RUNNING.sub('', text).strip()}"

"""The one base of every config section: frozen, unknown keys rejected, fields documented by the
docstring under them (which pydantic turns into the field's description)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

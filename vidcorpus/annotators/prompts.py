"""Prompt templates as versioned files: `prompts/<id>.v<version>.txt`.

A file holds a `[system]` and a `[user]` section with `$name` placeholders (`string.Template`,
so JSON braces need no escaping). Editing a prompt means adding a new version file: the id and
version travel with every annotation and into the cache key, so old and new outputs never mix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

_FILE_NAME = re.compile(r"^(?P<id>[a-z][a-z0-9_]*)\.v(?P<version>\d+)\.txt$")
_SECTION = re.compile(r"^\[(system|user)\]\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Prompt:
    id: str
    version: int
    system: str
    user: str

    def render(self, **values: object) -> tuple[str, str]:
        """(system, user) texts; a missing placeholder value raises KeyError."""
        text = {k: str(v) for k, v in values.items()}
        return Template(self.system).substitute(text), Template(self.user).substitute(text)


def prompt_versions() -> dict[str, list[int]]:
    """Every prompt id shipped with the package and its versions, oldest first."""
    found: dict[str, list[int]] = {}
    for entry in _prompt_dir().iterdir():
        if match := _FILE_NAME.match(entry.name):
            found.setdefault(match["id"], []).append(int(match["version"]))
    return {pid: sorted(versions) for pid, versions in sorted(found.items())}


@lru_cache(maxsize=None)
def load_prompt(prompt_id: str, version: int | None = None) -> Prompt:
    """The prompt `prompt_id` at `version` (newest when None)."""
    versions = prompt_versions().get(prompt_id)
    if not versions:
        raise KeyError(f"no prompt named {prompt_id!r}")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise KeyError(f"prompt {prompt_id!r} has no version {version} (has {versions})")
    text = _prompt_dir().joinpath(f"{prompt_id}.v{version}.txt").read_text("utf-8")
    return Prompt(prompt_id, version, **_sections(text, prompt_id))


def _prompt_dir():
    return resources.files(__package__).joinpath("prompts")


def _sections(text: str, prompt_id: str) -> dict[str, str]:
    parts = _SECTION.split(text)
    sections = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2])}
    if set(sections) != {"system", "user"} or parts[0].strip():
        raise ValueError(f"prompt {prompt_id!r} must consist of a [system] and a [user] section")
    return sections

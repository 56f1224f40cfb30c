"""What a build checks before its pipeline starts. Each check ends the command within seconds
with one plain sentence, instead of minutes later inside a Beam step: no inputs found, CLIP
not installed, CLIP weights neither on this machine nor reachable."""

from __future__ import annotations

import importlib.util

from vidcorpus.config import BuildConfig

CLIP_PACKAGES = ("torch", "open_clip")


class CannotStart(ValueError):
    """A build that would fail for a reason known before it runs (a bad path, version or plan)."""


def check_inputs(spec: str, uris: list[str], skipped: list[str], allow_empty: bool) -> None:
    """No inputs is almost always a mistyped path or glob; an empty release would be permanent
    under `--name/--version`, so it takes `--allow-empty`."""
    if uris or allow_empty:
        return
    seen = f" ({len(skipped)} files without a video extension, see input.extensions)" if skipped else ""
    raise CannotStart(f"no videos found at {spec}{seen}; check the path or glob (quote globs so the shell "
                      "leaves them to vidcorpus), or pass --allow-empty to build an empty release")


def check_clip(cfg: BuildConfig) -> None:
    """CLIP is installed and its weights resolvable here. Skipped on Dataflow, whose workers load
    the weights from their own image."""
    if not cfg.clip_model.enabled or cfg.runner.name == "dataflow":
        return
    require_clip()
    from vidcorpus.scoring.clip import check_clip_weights
    check_clip_weights(cfg.clip_model)


def require_clip() -> None:
    """torch and open_clip are an extra (`vidcorpus[clip]`); say so rather than fail an import."""
    missing = [name for name in CLIP_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise CannotStart(f"CLIP needs {' and '.join(missing)}, which this install lacks: "
                          "pip install 'vidcorpus[clip]' (or set clip.enabled=false)")

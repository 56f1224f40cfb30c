"""Publish a release to the Hugging Face Hub as a dataset repository, tagged with its version.

The plan is the exact list of files to upload: `manifest.json`, every file it lists, the dataset
card (written first when missing) and `report.html` when present; never the `.work/` staging
area. Source videos go up only when the build's config says their licences allow it
(`publish.include_sources: true` in the manifest's config; absent means no), and then only
videos whose licence is known.

Files are sent with `HfApi.create_commit` in batches; the last commit carries the manifest,
card and report and deletes repository files the release no longer has (stale shards would
otherwise be picked up by the card's globs), and the version tag points at that commit. (The
installed huggingface_hub has no `upload_large_folder`; `upload_folder` cannot send files from
outside the folder, such as sources, or delete stale ones in the same commit.)

The token comes from the `token` argument, else `HF_TOKEN` or the stored `huggingface-cli
login`, resolved by huggingface_hub itself; it is never stored in the plan, written or logged.
A real publish without any token stops before anything else (`NoHubToken`). A dry run sends
nothing; it only reads the repository's file list (when the Hub answers) to show which files
the real run would delete.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from typing import Any

from vidcorpus import storage
from vidcorpus.publish.card import UNKNOWN, render_card, write_card
from vidcorpus.publish.validate import validate_release
from vidcorpus.release.layout import CARD, DERIVED_FILES, MANIFEST, REPORT
from vidcorpus.release.reader import read_manifest, read_table, release_version

log = logging.getLogger(__name__)
REPO_TYPE = "dataset"
FILES_PER_COMMIT = 500
"""Hub commits stay well below its per-commit file limits; big releases take several commits."""
KEEP_IN_REPO = (".gitattributes",)
SOURCES_DIR = "sources"


class ReleaseInvalid(ValueError):
    """A release that fails validation; publishing it would ship broken data."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"release is not valid ({len(problems)} problem(s)):\n  {shown}{more}")


class NoHubToken(RuntimeError):
    """Publishing needs a Hugging Face token and none is set."""


@dataclass(frozen=True)
class PlannedFile:
    path_in_repo: str
    source: str
    """Where the bytes come from: a file of the release, or a source video's URI."""
    bytes: int
    generated: bool = False
    """True for a dataset card that does not exist yet and is written before uploading."""


@dataclass
class PublishPlan:
    repo_id: str
    version: str
    private: bool
    files: list[PlannedFile]
    left_out: list[str] = field(default_factory=list)
    """Source videos not uploaded, with the reason."""
    dry_run: bool = True
    deleted: list[str] = field(default_factory=list)
    """Repository files the release does not have: removed by a real run, listed by a dry run."""
    remote_unread: str | None = None
    """Why a dry run could not list the repository's files (so `deleted` may be incomplete)."""
    commits: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [f.path_in_repo for f in self.files]

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def describe(self) -> str:
        head = (f"{'would publish' if self.dry_run else 'published'} {len(self.files)} files "
                f"({self.total_bytes} bytes) to dataset {self.repo_id} "
                f"({'private' if self.private else 'public'}), tag {self.version}")
        lines = [head] + [f"  {f.path_in_repo}  {f.bytes} bytes{'  (written first)' if f.generated else ''}"
                          for f in self.files]
        lines += [f"  left out: {reason}" for reason in self.left_out]
        gone = "would delete from the repository" if self.dry_run else "deleted from the repository"
        lines += [f"  {gone}: {path}" for path in self.deleted]
        if self.remote_unread:
            lines.append(f"  repository files not listed ({self.remote_unread}); a real run deletes every file "
                         "there that the release does not have")
        return "\n".join(lines)


def publish(release_dir: str, repo_id: str, private: bool = False, dry_run: bool = False,
            token: str | None = None, check: bool = True) -> PublishPlan:
    """Upload a release to `repo_id` and tag it; with `dry_run`, only return the plan (no network,
    nothing written). `check` validates the release first and refuses an invalid one."""
    root = release_dir.rstrip("/")
    if not dry_run and not (token or _stored_token()):
        raise NoHubToken("publishing needs a Hugging Face token with write access: set HF_TOKEN or run "
                         "`hf auth login` (`--dry-run` shows what would be sent without one)")
    if check:
        problems = validate_release(root)
        if problems:
            raise ReleaseInvalid(problems)
    plan = plan_upload(root, repo_id, private)
    plan.dry_run = dry_run
    if dry_run:
        _list_deletions(plan, token)
        log.info("%s", plan.describe())
        return plan
    _upload(root, plan, token)
    log.info("%s", plan.describe())
    return plan


def plan_upload(root: str, repo_id: str, private: bool = False) -> PublishPlan:
    """The exact files a publish sends, sorted by their path in the repository."""
    manifest = read_manifest(root)
    files = [PlannedFile(MANIFEST, storage.join(root, MANIFEST), storage.size_of(storage.join(root, MANIFEST)))]
    files += [PlannedFile(e["path"], storage.join(root, e["path"]), e["bytes"]) for e in manifest["files"]
              if e["path"] not in DERIVED_FILES]
    files.append(_card_file(root))
    report = storage.join(root, REPORT)
    if storage.exists(report):
        files.append(PlannedFile(REPORT, report, storage.size_of(report)))
    sources, left_out = plan_sources(root, manifest)
    files = sorted(files + sources, key=lambda f: f.path_in_repo)
    return PublishPlan(repo_id, release_version(manifest), private, files, left_out)


def _card_file(root: str) -> PlannedFile:
    card = storage.join(root, CARD)
    if storage.exists(card):
        return PlannedFile(CARD, card, storage.size_of(card))
    return PlannedFile(CARD, card, len(render_card(root).encode()), generated=True)


def include_sources(manifest: dict[str, Any]) -> bool:
    """`publish.include_sources` of the build config; absent means the sources stay private."""
    return bool(((manifest.get("config") or {}).get("publish") or {}).get("include_sources", False))


def plan_sources(root: str, manifest: dict[str, Any]) -> tuple[list[PlannedFile], list[str]]:
    """Source videos to upload as `sources/<video_id><ext>`, and those left out with the reason."""
    videos = read_table(root, manifest, "videos")
    rows = sorted(videos.to_pylist(), key=lambda v: v["video_id"]) if videos is not None else []
    if not rows:
        return [], []
    if not include_sources(manifest):
        return [], [f"{len(rows)} source video(s): publish.include_sources is not set in the build config"]
    default = ((manifest.get("config") or {}).get("input") or {}).get("license")
    files, left_out = [], []
    for video in rows:
        licence = video.get("license") or default
        if not licence or licence.strip().lower() == UNKNOWN:
            left_out.append(f"{video['uri']}: licence unknown")
            continue
        ext = posixpath.splitext(video["uri"])[1].lower()
        files.append(PlannedFile(f"{SOURCES_DIR}/{video['video_id']}{ext}", video["uri"], video["size_bytes"]))
    return files, left_out


def _upload(root: str, plan: PublishPlan, token: str | None) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    remote = [f.source for f in plan.files if not storage.is_local(f.source)]
    if remote:
        raise ValueError(f"publishing uploads local files; copy these to local disk first: {remote[:5]}")
    if any(f.generated for f in plan.files):
        write_card(root)
    api = HfApi(token=token)
    api.create_repo(plan.repo_id, repo_type=REPO_TYPE, private=plan.private, exist_ok=True)
    plan.deleted = stale_files(api.list_repo_files(plan.repo_id, repo_type=REPO_TYPE), plan)
    batches = commit_batches(plan.files, FILES_PER_COMMIT)
    for i, batch in enumerate(batches, start=1):
        operations: list[Any] = [CommitOperationAdd(path_in_repo=f.path_in_repo,
                                                    path_or_fileobj=storage.local_path(f.source)) for f in batch]
        if i == len(batches):
            operations += [CommitOperationDelete(path_in_repo=path) for path in plan.deleted]
        info = api.create_commit(plan.repo_id, operations, repo_type=REPO_TYPE,
                                 commit_message=f"vidcorpus release {plan.version} ({i}/{len(batches)})")
        plan.commits.append(info.oid)
    api.create_tag(plan.repo_id, tag=plan.version, repo_type=REPO_TYPE, revision=plan.commits[-1])


def stale_files(existing, plan: PublishPlan) -> list[str]:
    """Repository files the release does not have (a publish deletes them), sorted."""
    return sorted(set(existing) - set(plan.paths) - set(KEEP_IN_REPO))


def _list_deletions(plan: PublishPlan, token: str | None) -> None:
    """Read-only: what a real publish would delete. A missing repository deletes nothing."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        existing = HfApi(token=token).list_repo_files(plan.repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        existing = []
    except Exception as exc:  # noqa: BLE001 - offline or refused: say so, still show the plan
        plan.remote_unread = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return
    plan.deleted = stale_files(existing, plan)


def _stored_token() -> str | None:
    from huggingface_hub import get_token
    return get_token()


def commit_batches(files: list[PlannedFile], per_commit: int = FILES_PER_COMMIT) -> list[list[PlannedFile]]:
    """Data files in batches, then one last commit with the manifest, card and report, so the
    repository's card and manifest only ever describe files that are already there."""
    last_names = {MANIFEST, CARD, REPORT}
    data = [f for f in files if f.path_in_repo not in last_names]
    batches = [data[i:i + per_commit] for i in range(0, len(data), per_commit)]
    return batches + [[f for f in files if f.path_in_repo in last_names]]

"""vidcorpus: raw videos in, a versioned training corpus for long-video language models out.

Commands: build · demo · validate · report · publish · inspect
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from vidcorpus.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidcorpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage's warnings and failures")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build a corpus from videos")
    build.add_argument("--input", required=True, help="directory, glob, list file (.txt) or one video")
    build.add_argument("--output", required=True,
                       help="release directory, or the root of named versions with --name/--version")
    build.add_argument("--name", help="dataset name: the release goes to <output>/<name>/<version>")
    build.add_argument("--version", help="semantic version of this release, e.g. 1.0.0")
    build.add_argument("--retry-failed", action="store_true",
                       help="process again the videos an earlier run of this config staged as failures")
    _config_args(build)

    demo = commands.add_parser("demo", help="generate sample videos and build a demo corpus from them")
    demo.add_argument("--output", default="demo", help="folder for the sample videos and the corpus")
    _config_args(demo)

    validate = commands.add_parser("validate", help="check a release against its manifest and schemas")
    validate.add_argument("release")

    report = commands.add_parser("report", help="write report.html (plots, thumbnails) into a release")
    report.add_argument("release")

    publish = commands.add_parser("publish", help="upload a release to the Hugging Face Hub")
    publish.add_argument("release")
    publish.add_argument("--repo-id", required=True, help="org/name of the dataset repository")
    publish.add_argument("--private", action="store_true")
    publish.add_argument("--dry-run", action="store_true", help="list exactly what would be uploaded; send nothing")

    inspect = commands.add_parser("inspect", help="print a release's counts, tables and a few clips")
    inspect.add_argument("release")
    inspect.add_argument("--clips", type=int, default=5, help="clips to show")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_interruptible(COMMANDS[args.command], args)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


STOPPED = ("finished videos are kept in the work directory; run the same command again to resume "
           "(a half-written release is never left looking finished)")
SIGNAL_EXITS = {signal.SIGINT: ("interrupted (Ctrl-C)", 130, KeyboardInterrupt),
                signal.SIGTERM: ("terminated (SIGTERM)", 143, Terminated)}


def run_interruptible(command, args) -> int:
    """Run a command; Ctrl-C and SIGTERM end it with one line (what is kept, how to resume) and
    exit 130 / 143. The signal is remembered, because the pipeline runner re-raises the interrupt
    it sees as an exception of its own."""
    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)
        logging.disable(logging.CRITICAL)  # the runner logs the interrupt it sees as an error
        raise SIGNAL_EXITS[signum][2]()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNAL_EXITS}
    try:
        return command(args)
    except BaseException:
        if not received:
            raise
        what, code, _ = SIGNAL_EXITS[received[0]]
        return _fail(f"{what}; {STOPPED}", code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe (default: the embedded local recipe)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set scenes.detector=adaptive (repeatable)")


def _fail(message: str, code: int = 2) -> int:
    print(f"vidcorpus: {message}", file=sys.stderr)
    return code


def _build(args) -> int:
    from vidcorpus.pipelines.build import build
    from vidcorpus.pipelines.lock import BuildLocked
    from vidcorpus.release.layout import ReleaseExists
    from vidcorpus.storage import DiskFull

    try:
        summary = build(args.input, args.output, load_config(args.config, args.set), name=args.name,
                        version=args.version, retry_failed=args.retry_failed)
    except (ConfigError, FileNotFoundError, ValueError, ReleaseExists, BuildLocked) as exc:
        return _fail(str(exc))
    except DiskFull as exc:
        return _fail(str(exc), 1)
    _print_summary(summary)
    return 0


def _demo(args) -> int:
    from vidcorpus.media.synth import write_demo_videos
    from vidcorpus.pipelines.build import build

    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        return _fail(str(exc))
    videos = f"{args.output}/videos"
    write_demo_videos(videos)
    _print_summary(build(videos, f"{args.output}/corpus", cfg))
    return 0


def _print_summary(summary) -> None:
    c = summary.counts
    print(f"{summary.output}: {c['videos']} videos, {c['clips']} clips, {c['failures']} failures "
          f"({c['inputs_failed']} inputs failed), {c['shards']} shards; dataset hash {summary.dataset_hash[:16]}")
    for stage, reason in summary.skipped_stages.items():
        print(f"  skipped stage {stage}: {reason}")


def _validate(args) -> int:
    from vidcorpus.publish.validate import validate_release

    problems = validate_release(args.release)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return _fail(f"{args.release}: {len(problems)} problem(s)", 1)
    print(f"{args.release}: valid")
    return 0


def _report(args) -> int:
    from vidcorpus.publish.report import write_report
    from vidcorpus.release.manifest import is_sealed, seal_manifest
    from vidcorpus.release.reader import read_manifest

    print(write_report(args.release))
    if is_sealed(read_manifest(args.release)):
        seal_manifest(args.release)  # the manifest lists report.html with its new checksum
    return 0


def _publish(args) -> int:
    from vidcorpus.publish.hub import ReleaseInvalid, publish

    try:
        plan = publish(args.release, args.repo_id, private=args.private, dry_run=args.dry_run)
    except ReleaseInvalid as exc:
        return _fail(str(exc), 1)
    print(plan.describe())
    return 0


def _inspect(args) -> int:
    from vidcorpus.release.reader import read_manifest, read_table

    manifest = read_manifest(args.release)
    print(json.dumps({k: manifest.get(k) for k in ("name", "version", "counts", "skipped_stages", "models",
                                                   "usage", "dataset_hash")}, indent=2))
    clips = read_table(args.release, manifest, "clips")
    for clip in (clips.slice(0, args.clips).to_pylist() if clips is not None else []):
        print(f"{clip['clip_id']}  {clip['start_s']:8.2f}-{clip['end_s']:8.2f} s  "
              f"{len(clip['keyframes'])} keyframes  {clip['clip_mode']}  {clip['shard']}")
    return 0


COMMANDS = {"build": _build, "demo": _demo, "validate": _validate, "report": _report, "publish": _publish,
            "inspect": _inspect}



def entry() -> None:
    """The console script: `main`, then an immediate exit once everything is flushed. Libraries
    leave native threads running (Arrow's thread pool, gRPC's, jemalloc's); tearing the
    interpreter down around them could abort in the C++ runtime (`terminate called without an
    active exception`, exit 134) after the command had already printed its result."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()

"""vidcorpus: raw videos in, a versioned training corpus for long-video language models out.

Commands: build · demo · validate · report · publish · inspect · export · llm (ab, export, import) · models fetch

Global flags go anywhere on the line: -v (warnings, failures and a traceback on error),
-vv (also Beam's own INFO logs), -q (errors only, no progress line).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from vidcorpus.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidcorpus", description=__doc__, parents=[_global_flags(True)],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_commands(commands, _global_flags(False))
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return run_interruptible(COMMANDS[args.command], args)
    except Exception as exc:  # noqa: BLE001 - one plain paragraph; -v adds the traceback
        from vidcorpus.pipelines.errors import original_message
        logging.getLogger("vidcorpus").debug("traceback", exc_info=True)
        return _fail(original_message(exc), 1)


def _global_flags(top: bool) -> argparse.ArgumentParser:
    """-v/-q, accepted before and after the subcommand; the subcommands' copies leave the values
    alone unless given (SUPPRESS), so `vidcorpus -v build` and `vidcorpus build -v` agree."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                       help="-v: warnings, each failure, tracebacks on error; -vv: also Beam's INFO logs")
    flags.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                       help="errors only: no progress line, no warnings")
    return flags


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # Beam's own logs (runner choice, bundle errors that also come back as the exception) only with -vv.
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose >= 2 else logging.CRITICAL)
    logging.getLogger("vidcorpus").setLevel(logging.DEBUG if verbose else level)


def _add_commands(commands, flags: argparse.ArgumentParser) -> None:
    build = commands.add_parser("build", help="build a corpus from videos", parents=[flags])
    build.add_argument("--input", required=True, help="directory, glob, list file (.txt) or one video")
    build.add_argument("--output", required=True,
                       help="release directory, or the root of named versions with --name/--version")
    build.add_argument("--name", help="dataset name: the release goes to <output>/<name>/<version>")
    build.add_argument("--version", help="semantic version of this release, e.g. 1.0.0")
    build.add_argument("--retry-failed", action="store_true",
                       help="process again the videos an earlier run of this config staged as failures")
    build.add_argument("--allow-empty", action="store_true",
                       help="build a release even when the input matches no video (otherwise an error)")
    build.add_argument("--no-wait", action="store_true",
                       help="llm.mode=batch: submit the pending batches and exit with code 75; rerun to collect")
    _config_args(build)

    demo = commands.add_parser("demo", help="generate sample videos and build a demo corpus from them",
                               parents=[flags])
    demo.add_argument("--output", default="demo", help="folder for the sample videos and the corpus")
    _config_args(demo)

    validate = commands.add_parser("validate", help="check a release against its manifest and schemas",
                                   parents=[flags])
    validate.add_argument("release")

    report = commands.add_parser("report", help="write report.html (plots, thumbnails) into a release",
                                 parents=[flags])
    report.add_argument("release")

    publish = commands.add_parser("publish", help="upload a release to the Hugging Face Hub", parents=[flags])
    publish.add_argument("release")
    publish.add_argument("--repo-id", required=True, help="org/name of the dataset repository")
    publish.add_argument("--private", action="store_true")
    publish.add_argument("--dry-run", action="store_true",
                         help="list exactly what would be uploaded and which repository files deleted; send nothing")

    inspect = commands.add_parser("inspect", help="print a release's counts, tables and a few clips",
                                  parents=[flags])
    inspect.add_argument("release")
    inspect.add_argument("--clips", type=int, default=5, help="clips to show")

    models = commands.add_parser("models", help="model weights: `models fetch` caches CLIP's ahead of an offline run",
                                 parents=[flags])
    fetch = models.add_subparsers(dest="models_command", required=True).add_parser(
        "fetch", help="download the configured CLIP weights into clip.cache_dir (or the Hugging Face cache)",
        parents=[flags])
    _config_args(fetch)
    export = commands.add_parser("export", help="write the task rows in a trainer's format, with their media",
                                 parents=[flags])
    export.add_argument("release")
    export.add_argument("--format", required=True, choices=("llamafactory", "llava", "trl-sft", "trl-grpo", "openai"))
    export.add_argument("--output", help="export folder (default: <release>/exports/<format>)")
    export.add_argument("--split", help="only this split's rows")
    export.add_argument("--frames", type=int, default=8, help="frames per video in the TRL and OpenAI formats")
    llm = commands.add_parser("llm", help="LLM tools: prompt A/B, batch JSONL for an offline GPU node",
                              parents=[flags]).add_subparsers(dest="llm_command", required=True)
    export_batch = llm.add_parser("export", help="write the pending batch round as OpenAI Batch JSONL", parents=[flags])
    export_batch.add_argument("work_dir", help="the build's work directory (<release>/.work or <output>/<name>/.work)")
    export_batch.add_argument("--output", default="-", help="file to write (default: stdout)")
    imports = llm.add_parser("import", help="hand batch results JSONL to the next build", parents=[flags])
    imports.add_argument("results", help="results JSONL (vllm run-batch -o, or an OpenAI batch output file)")
    imports.add_argument("--work-dir", required=True, help="the build's work directory")
    ab = llm.add_parser("ab", help="caption a release's clips with two prompt versions, side by side in report.html",
                        parents=[flags])
    ab.add_argument("release")
    ab.add_argument("--prompt", default="caption", help="caption, caption_diff or caption_merge")
    ab.add_argument("--versions", type=int, nargs=2, required=True, metavar=("A", "B"))
    ab.add_argument("--videos", type=int, default=3, help="the first N videos (by id) are captioned")
    _config_args(ab)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


STOPPED = ("finished videos are kept in the work directory; run the same command again to resume "
           "(a half-written release is never left looking finished)")
SIGNAL_EXITS = {signal.SIGINT: ("interrupted (Ctrl-C)", 130, KeyboardInterrupt),
                signal.SIGTERM: ("terminated (SIGTERM)", 143, Terminated)}


class WorkerTracebacksMuted:
    """stderr without the tracebacks Beam's worker threads print for a failed bundle (the local
    runner's `multi_threading` mode): the runner raises the same error in the main thread,
    which the CLI reports as one paragraph; after a signal, they are the interrupt's echoes."""

    def __init__(self, stream):
        self.stream = stream
        self._muted = threading.local()  # a thread whose traceback was dropped: its print's end too

    def write(self, text: str) -> int:
        if threading.current_thread() is not threading.main_thread():
            if text.startswith("Traceback (most recent") or (text == "\n" and getattr(self._muted, "end", False)):
                self._muted.end = text != "\n"
                return len(text)
            self._muted.end = False
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


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
    stderr, sys.stderr = sys.stderr, WorkerTracebacksMuted(sys.stderr)
    try:
        return command(args)
    except BaseException:
        if not received:
            raise
        what, code, _ = SIGNAL_EXITS[received[0]]
        return _fail(f"{what}; {STOPPED}", code)
    finally:
        sys.stderr = stderr
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
    overrides = ["llm.batch_wait=false"] if args.no_wait else []
    try:
        cfg = _load_config(args, overrides=overrides)  # before the pipeline's imports, so a bad key fails at once
    except ConfigError as exc:
        return _fail(str(exc))
    from vidcorpus.pipelines.build import BatchesPending, StageFailed, build
    from vidcorpus.pipelines.lock import BuildLocked
    from vidcorpus.pipelines.preflight import CannotStart
    from vidcorpus.release.layout import ReleaseExists
    from vidcorpus.storage import DiskFull

    try:
        summary = build(args.input, args.output, cfg, name=args.name,
                        version=args.version, retry_failed=args.retry_failed, allow_empty=args.allow_empty)
    except BatchesPending as exc:
        return _fail(str(exc), EX_TEMPFAIL)
    except StageFailed as exc:
        return _fail(str(exc), 1)
    except (ReleaseExists, CannotStart, BuildLocked) as exc:  # known before the pipeline started; the rest: main
        return _fail(str(exc))
    except DiskFull as exc:
        return _fail(str(exc), 1)
    _print_summary(summary)
    return 0


def _load_config(args, defaults: tuple[str, ...] = (), overrides: list[str] = ()):
    """The recipe, then `defaults`, then --set and `overrides`; -q also turns the progress line off."""
    return load_config(args.config, [*defaults, *args.set, *overrides,
                                     *(["runner.progress=false"] if args.quiet else [])])


def _demo(args) -> int:
    from vidcorpus.media.synth import write_demo_videos
    from vidcorpus.pipelines.build import build

    try:
        cfg = _load_config(args, DEMO_SETTINGS)
    except ConfigError as exc:
        return _fail(str(exc))
    videos = f"{args.output}/videos"
    write_demo_videos(videos)
    _print_summary(build(videos, f"{args.output}/corpus", cfg))
    return 0


DEMO_SETTINGS = ("tasks.niah.grid.haystack_s=[4, 7]", "tasks.niah.needle_s=[0.5, 1.0]", "tasks.niah.probes_per_video=4",
                 "tasks.niah.multi_counts=[1, 3]")
"""The demo's videos last 3–8 s: haystacks this short let it show NIAH probes too."""


def _models(args) -> int:
    from vidcorpus.pipelines.preflight import CannotStart, require_clip

    try:
        cfg = _load_config(args)
        require_clip()
    except (ConfigError, CannotStart) as exc:
        return _fail(str(exc))
    from vidcorpus.scoring.clip import fetch_clip_weights

    print(f"CLIP {cfg.clip_model.model} weights: {fetch_clip_weights(cfg.clip_model)}")
    return 0


def _print_summary(summary) -> None:
    c = summary.counts
    print(f"{summary.output}: {c['videos']} videos, {c['clips']} clips, {c['failures']} failures "
          f"({c['inputs_failed']} inputs failed), {c['shards']} shards; dataset hash {summary.dataset_hash[:16]}")
    for stage, reason in summary.skipped_stages.items():
        print(f"  skipped stage {stage}: {reason}")
    if llm := summary.run.get("llm"):
        print(f"  LLM this run: {llm.get('requests', 0)} requests ({llm.get('retries', 0)} retries, "
              f"{llm.get('repairs', 0)} repairs), {llm.get('cache_hits', 0)} cache hits, "
              f"{llm.get('tokens_in', 0) + llm.get('tokens_out', 0)} tokens, ${llm.get('cost_usd', 0):.4f}")


def _llm(args) -> int:
    return {"ab": _llm_ab, "export": _llm_batch, "import": _llm_batch}[args.llm_command](args)


def _llm_batch(args) -> int:
    from vidcorpus.annotators.batch import export_requests, import_results
    from vidcorpus.pipelines.annotate import LLM_CACHE
    from vidcorpus.storage import join

    if args.llm_command == "export":
        data = export_requests(join(args.work_dir, LLM_CACHE))
        if not data:
            return _fail(f"{args.work_dir}: no pending batch round (run `build` with llm.mode=batch and "
                         f"--set llm.batch_submit=false first)", 1)
        if args.output == "-":
            sys.stdout.buffer.write(data)
        else:
            with open(args.output, "wb") as f:
                f.write(data)
        return 0
    with open(args.results, "rb") as f:
        count = import_results(join(args.work_dir, LLM_CACHE), f.read())
    print(f"{count} results imported; run the same build command again to collect them")
    return 0


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
    print(_rewrite_report(args.release))
    return 0


def _rewrite_report(release: str) -> str:
    """Write report.html again and, in a finished release, seal the manifest again so that it
    lists the report (and any other view) with its new checksum."""
    from vidcorpus.publish.report import write_report
    from vidcorpus.release.manifest import is_sealed, seal_manifest
    from vidcorpus.release.reader import read_manifest

    path = write_report(release)
    if is_sealed(read_manifest(release)):
        seal_manifest(release)
    return path


def _publish(args) -> int:
    from vidcorpus.publish.hub import NoHubToken, ReleaseInvalid, publish

    try:
        plan = publish(args.release, args.repo_id, private=args.private, dry_run=args.dry_run)
    except (ReleaseInvalid, NoHubToken) as exc:
        return _fail(str(exc), 1)
    print(plan.describe())
    return 0


def _inspect(args) -> int:
    from vidcorpus.release.reader import read_manifest, read_table

    manifest = read_manifest(args.release)
    print(json.dumps({k: manifest.get(k) for k in ("name", "version", "counts", "skipped_stages", "models",
                                                   "usage", "run", "dataset_hash")}, indent=2))
    clips = read_table(args.release, manifest, "clips")
    for clip in (clips.slice(0, args.clips).to_pylist() if clips is not None else []):
        print(f"{clip['clip_id']}  {clip['start_s']:8.2f}-{clip['end_s']:8.2f} s  "
              f"{len(clip['keyframes'])} keyframes  {clip['clip_mode']}  {clip['shard']}")
    return 0


def _export(args) -> int:
    from vidcorpus.release.trainers import export_release

    try:
        summary = export_release(args.release, args.format, args.output, split=args.split,
                                 frames_per_video=args.frames)
    except (FileNotFoundError, ValueError) as exc:  # MediaMissing is a ValueError
        return _fail(str(exc))
    print(summary.describe())
    return 0


def _llm_ab(args) -> int:
    from vidcorpus.config.llm import skipped_reason
    from vidcorpus.publish.ab import run_ab

    try:
        llm = load_config(args.config, args.set).llm
    except ConfigError as exc:
        return _fail(str(exc))
    if (reason := skipped_reason(llm)) is not None:
        return _fail(reason)
    try:
        print(run_ab(args.release, llm, args.prompt, tuple(args.versions), args.videos))
    except (KeyError, ValueError) as exc:
        return _fail(str(exc).strip("'\""))
    print(_rewrite_report(args.release))
    return 0


COMMANDS = {"build": _build, "demo": _demo, "validate": _validate, "report": _report, "publish": _publish,
            "inspect": _inspect, "export": _export, "llm": _llm, "models": _models}
EX_TEMPFAIL = 75
"""Exit code of `build --no-wait` with batches submitted: try again later (sysexits.h)."""


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

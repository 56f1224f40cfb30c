"""vidcorpus: raw videos in, a versioned training corpus for long-video language models out.

Commands: build · demo · validate · report · publish · inspect
"""

from __future__ import annotations

import argparse
import json
import logging
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
    build.add_argument("--no-wait", action="store_true",
                       help="llm.mode=batch: submit the pending batches and exit with code 75; rerun to collect")
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

    llm = commands.add_parser("llm", help="batch requests for an offline GPU node (vllm run-batch)")
    llm_commands = llm.add_subparsers(dest="llm_command", required=True)
    export = llm_commands.add_parser("export", help="write the pending batch round as OpenAI Batch JSONL")
    export.add_argument("work_dir", help="the build's work directory (<release>/.work or <output>/<name>/.work)")
    export.add_argument("--output", default="-", help="file to write (default: stdout)")
    imports = llm_commands.add_parser("import", help="hand batch results JSONL to the next build")
    imports.add_argument("results", help="results JSONL (vllm run-batch -o, or an OpenAI batch output file)")
    imports.add_argument("--work-dir", required=True, help="the build's work directory")

    inspect = commands.add_parser("inspect", help="print a release's counts, tables and a few clips")
    inspect.add_argument("release")
    inspect.add_argument("--clips", type=int, default=5, help="clips to show")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return COMMANDS[args.command](args)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe (default: the embedded local recipe)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set scenes.detector=adaptive (repeatable)")


def _fail(message: str, code: int = 2) -> int:
    print(f"vidcorpus: {message}", file=sys.stderr)
    return code


def _build(args) -> int:
    from vidcorpus.pipelines.build import BatchesPending, build
    from vidcorpus.release.layout import ReleaseExists

    overrides = args.set + (["llm.batch_wait=false"] if args.no_wait else [])
    try:
        summary = build(args.input, args.output, load_config(args.config, overrides), name=args.name,
                        version=args.version, retry_failed=args.retry_failed)
    except BatchesPending as exc:
        return _fail(str(exc), EX_TEMPFAIL)
    except (ConfigError, FileNotFoundError, ValueError, ReleaseExists) as exc:
        return _fail(str(exc))
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
    if llm := summary.run.get("llm"):
        print(f"  LLM this run: {llm.get('requests', 0)} requests ({llm.get('retries', 0)} retries, "
              f"{llm.get('repairs', 0)} repairs), {llm.get('cache_hits', 0)} cache hits, "
              f"{llm.get('tokens_in', 0) + llm.get('tokens_out', 0)} tokens, ${llm.get('cost_usd', 0):.4f}")


def _llm(args) -> int:
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
    from vidcorpus.publish.report import write_report

    print(write_report(args.release))
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
                                                   "usage", "run", "dataset_hash")}, indent=2))
    clips = read_table(args.release, manifest, "clips")
    for clip in (clips.slice(0, args.clips).to_pylist() if clips is not None else []):
        print(f"{clip['clip_id']}  {clip['start_s']:8.2f}-{clip['end_s']:8.2f} s  "
              f"{len(clip['keyframes'])} keyframes  {clip['clip_mode']}  {clip['shard']}")
    return 0


EX_TEMPFAIL = 75
"""Exit code of `build --no-wait` with batches submitted: try again later (sysexits.h)."""

COMMANDS = {"build": _build, "llm": _llm, "demo": _demo, "validate": _validate, "report": _report, "publish": _publish,
            "inspect": _inspect}

if __name__ == "__main__":
    sys.exit(main())

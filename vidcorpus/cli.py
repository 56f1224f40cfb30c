"""Command line: `vidcorpus build | demo`."""

from __future__ import annotations

import argparse
import logging
import sys

from vidcorpus.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidcorpus", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build a corpus from videos")
    build.add_argument("--input", required=True, help="directory, glob, list file (.txt) or one video")
    build.add_argument("--output", required=True, help="release directory")
    _config_args(build)

    demo = commands.add_parser("demo", help="generate sample videos and build a demo corpus from them")
    demo.add_argument("--output", default="demo", help="folder for the sample videos and the corpus")
    _config_args(demo)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"vidcorpus: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](args, cfg)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe (default: the embedded local recipe)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set scenes.detector=adaptive (repeatable)")


def _build(args, cfg) -> int:
    from vidcorpus.pipelines.build import build

    try:
        summary = build(args.input, args.output, cfg)
    except FileNotFoundError as exc:
        print(f"vidcorpus: {exc}", file=sys.stderr)
        return 2
    _print_summary(summary)
    return 0


def _demo(args, cfg) -> int:
    from vidcorpus.media.synth import write_demo_videos
    from vidcorpus.pipelines.build import build

    videos = f"{args.output}/videos"
    write_demo_videos(videos)
    summary = build(videos, f"{args.output}/corpus", cfg)
    _print_summary(summary)
    return 0


def _print_summary(summary) -> None:
    c = summary.counts
    print(f"{summary.output}: {c['videos']} videos, {c['clips']} clips, {c['failures']} failures "
          f"({c['inputs_failed']} inputs failed), {c['shards']} shards; dataset hash {summary.dataset_hash[:16]}")


COMMANDS = {"build": _build, "demo": _demo}

if __name__ == "__main__":
    sys.exit(main())

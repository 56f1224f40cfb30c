"""Needle-in-a-haystack probes: planned from clip records, answered by construction.

A probe hides needles in a haystack made of consecutive clips of one video. Probes are
drawn from a grid of haystack length x needle depth x needle kind:

- ``rendered``: for 1-3 s a word or number is drawn in a large white box in the middle of
  the haystack's own frames (the timeline is unchanged). Questions: what does it say
  (``exact``), when is it shown (``temporal_iou``).
- ``foreign``: a clip of another video (same split) is spliced in at the depth point; the
  haystack is trimmed by the clip's length, so every probe lasts its grid length. Questions: when does the
  out-of-place segment occur (``temporal_iou``) and, when the clip has a caption, which
  description matches it (``choice``, distractors from the haystack's own captions).
- ``multi``: k different words (k uniform over `multi_counts`, 1-5) at stratified positions. Questions: how many (``exact``),
  in which order (``order``), when (``temporal_iou`` over all spans).

Depth d puts a needle's start at d * (haystack - needle): 0 is the first frame, 1 ends on the
last. All needle boundaries sit on the probe's frame grid (multiples of 1/fps), so a frame
either shows a needle or not.

Planning is a pure function of records and the config; nothing here reads pixels. The
`ProbeSpec.edit` edit list is the reference form of a probe (uri, source start/end and the
overlay text + box per segment); `vidcorpus.tasks.render.render_probe` writes it as MP4.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterable, Mapping, Sequence

from vidcorpus.config.tasks import NiahConfig, TasksConfig
from vidcorpus.ids import child_id, unit_hash
from vidcorpus.media.decode import snap as snap_size
from vidcorpus.media.needle import needle_layout
from vidcorpus.tasks.records import (
    EditList,
    MediaRef,
    Needle,
    ProbeSpec,
    Segment,
    Span,
    Task,
    TextOverlay,
    format_span,
    round_time,
    seeded_rng,
)
from vidcorpus.tasks.rewards import normalize_text
from vidcorpus.tasks.windows import clips_overlapping, contiguous_runs, run_span

Clip = dict[str, Any]

NEEDLE_WORDS = (
    "APPLE", "ANCHOR", "BANANA", "BASKET", "BICYCLE", "BRIDGE", "BUTTON", "CACTUS", "CAMERA",
    "CANDLE", "CARPET", "CASTLE", "CHERRY", "CIRCUS", "CLOCK", "COMPASS", "COOKIE", "DIAMOND",
    "DOLPHIN", "DRAGON", "EAGLE", "ENGINE", "FALCON", "FEATHER", "FOREST", "GARDEN", "GIRAFFE",
    "GUITAR", "HAMMER", "HELMET", "HONEY", "ISLAND", "JACKET", "JUNGLE", "KETTLE", "LADDER",
    "LANTERN", "LEMON", "LIZARD", "MAGNET", "MANGO", "MARBLE", "MIRROR", "MONKEY", "NAPKIN",
    "OCEAN", "ORANGE", "PANDA", "PARROT", "PENCIL", "PEPPER", "PIANO", "PILLOW", "PLANET",
    "POCKET", "PUZZLE", "RABBIT", "RIVER", "ROCKET", "SADDLE", "SALMON", "SHOVEL", "SILVER",
    "SPIDER", "SPOON", "SQUIRREL", "TEAPOT", "TIGER", "TOMATO", "TRUMPET", "TUNNEL", "TURTLE",
    "UMBRELLA", "VALLEY", "VIOLIN", "WALNUT", "WINDOW", "WIZARD", "YOGURT", "ZEBRA",
)

RENDERED_TEXT_QUESTIONS = (
    "At one point a word or number appears in a white box in the middle of the screen. What does it say?",
    "A short text is briefly shown in a box at the centre of the frame. What is the text?",
)
RENDERED_SPAN_QUESTIONS = (
    "At one point a word or number appears in a white box in the middle of the screen. When is it shown?",
    "During which seconds is the boxed word or number visible on screen?",
)
FOREIGN_SPAN_QUESTIONS = (
    "A short segment from a different video has been spliced into this video. "
    "When does the out-of-place segment occur?",
    "One part of this video does not belong to it: it was cut in from another video. When is that part?",
)
FOREIGN_CONTENT_QUESTIONS = (
    "A short segment from a different video has been spliced into this video. "
    "Which description matches the out-of-place segment?",
)
MULTI_COUNT_QUESTIONS = (
    "Several different words flash up in white boxes in the middle of the screen. How many different words are shown?",
)
MULTI_ORDER_QUESTIONS = (
    "Several different words flash up in white boxes in the middle of the screen. List them in the order they appear.",
)
MULTI_SPANS_QUESTIONS = (
    "Several different words flash up in white boxes in the middle of the screen. "
    "When is a word visible? Give every time span.",
)

TEXT_FORMAT = "Answer with the text only."
SPAN_FORMAT = "Answer with the start and end time in seconds, as start-end."
SPANS_FORMAT = "Answer with one start-end span in seconds per word, separated by commas."
COUNT_FORMAT = "Answer with a number."
ORDER_FORMAT = "Answer with the words separated by commas, the first one shown first."
CHOICE_FORMAT = "Answer with the letter of the correct option."


# --------------------------------------------------------------------------- geometry and grid


def probe_geometry(video: Mapping[str, Any], config: NiahConfig) -> tuple[float, int, int]:
    """(fps, width, height) of probe media: display size scaled to `max_side`, even sides."""
    source_fps = float(video.get("fps") or 30.0)
    fps = float(config.fps or min(source_fps, config.max_fps))
    width = int(video.get("display_width") or video.get("width") or 640)
    height = int(video.get("display_height") or video.get("height") or 360)
    scale = min(1.0, config.max_side / max(width, height))
    return fps, snap_size(width * scale), snap_size(height * scale)


def snap(seconds: float, fps: float) -> float:
    """The nearest time on the frame grid k / fps."""
    return round(seconds * fps) / fps


def frames_in(seconds: float, fps: float) -> int:
    return int(math.floor(seconds * fps + 1e-6))


def grid_start(seconds: float, fps: float) -> float:
    """The first time on the frame grid k / fps at or after `seconds`: where a haystack starting
    with a clip starts in its source, so its frames are the video's probe proxy frames
    (`tasks.proxy`)."""
    return math.ceil(seconds * fps - 1e-6) / fps


def _haystack_starts(runs: Sequence[Sequence[Clip]], length_s: float, fps: float) -> list[tuple[int, Clip]]:
    """(run index, first clip) for every clip a haystack of `length_s` can start at (on the grid)."""
    starts = []
    for index, run in enumerate(runs):
        _, run_end = run_span(run)
        starts += [(index, clip) for clip in run
                   if grid_start(float(clip["start_s"]), fps) + length_s <= run_end + 1e-6]
    return starts


def multi_min_haystack_s(config: NiahConfig) -> float:
    """The shortest haystack with room for the most needles of `multi_counts` (two needle lengths
    per slot), so every count stays equally likely."""
    return 2 * config.needle_s[1] * config.multi_counts[1]


def grid_cells(config: NiahConfig, longest_run_s: float, multi_min_s: float, has_foreign: bool) -> list[tuple]:
    """Feasible (haystack_s, kind, depth) cells for a video whose longest clip run is `longest_run_s`."""
    cells = []
    for haystack_s in config.grid.haystack_s:
        if haystack_s > longest_run_s + 1e-6:
            continue
        for kind in config.grid.kinds:
            if kind == "multi":
                if haystack_s >= multi_min_s:
                    cells.append((haystack_s, kind, None))
            elif kind == "rendered" or has_foreign:
                cells += [(haystack_s, kind, depth) for depth in config.grid.depths]
    return cells


# --------------------------------------------------------------------------- foreign pool


def in_foreign_pool(clip_id: str, config: TasksConfig) -> bool:
    """Whether a clip may serve as a foreign needle: a fixed share of clips by id hash.

    A per-clip predicate, so a pipeline can build the pool with a filter instead of a global
    sample; `foreign_pool_rank` then keeps the `foreign_pool_max` lowest of each split.
    """
    return unit_hash(clip_id, f"foreign-pool/{config.seed}") < config.niah.foreign_pool_fraction


def foreign_pool_rank(entry: Mapping[str, Any], seed: int) -> tuple[float, str]:
    """A pool entry's place in its split's pool, lowest first: its id hash, then its id."""
    return unit_hash(entry["clip_id"], f"foreign-pool/{seed}"), entry["clip_id"]


def foreign_candidate(
    clip: Clip, video: Mapping[str, Any], config: TasksConfig, caption: str | None = None
) -> dict[str, Any]:
    """A foreign-pool entry: the clip fields a splice needs plus its source uri, split and caption."""
    return {
        "clip_id": clip["clip_id"],
        "video_id": clip["video_id"],
        "uri": video["uri"],
        "start_s": float(clip["start_s"]),
        "end_s": float(clip["end_s"]),
        "split": video["split"],
        "dup_group": clip.get("dup_group"),
        "caption": caption,
    }


def _eligible_foreign(
    pool: Iterable[Mapping[str, Any]], video_id: str, split: str, haystack_groups: set, min_s: float
) -> list[Mapping[str, Any]]:
    """Pool entries from other videos of the same split, not near-duplicates of the haystack."""
    eligible = [
        entry for entry in pool
        if entry["video_id"] != video_id
        and entry["split"] == split
        and float(entry["end_s"]) - float(entry["start_s"]) >= min_s
        and (entry.get("dup_group") is None or entry.get("dup_group") not in haystack_groups)
    ]
    return sorted(eligible, key=lambda e: e["clip_id"])


# --------------------------------------------------------------------------- probe construction


def _needle_text(rng: random.Random, config: NiahConfig, taken: set[str], kinds: Sequence[str] | None = None) -> str:
    kind = rng.choice(sorted(kinds or config.needle_text))
    while True:
        text = rng.choice(NEEDLE_WORDS) if kind == "word" else str(rng.randint(10, 9999))
        if text not in taken:
            taken.add(text)
            return text


def _overlay(text: str, width: int, height: int) -> TextOverlay:
    layout = needle_layout(text, width, height)
    return TextOverlay(text=text, box=layout.box, font_size=layout.font_size)


def _needle_length(rng: random.Random, bounds: tuple[float, float], fps: float, cap_s: float) -> float:
    return max(1.0 / fps, snap(min(rng.uniform(*bounds), cap_s), fps))


def _haystack_piece(video: Mapping[str, Any], run: Sequence[Clip], source_start: float,
                    timeline_start: float, timeline_end: float, overlay: TextOverlay | None = None,
                    role: str = "haystack") -> Segment:
    source_from = source_start + timeline_start
    source_to = source_start + timeline_end
    return Segment(
        role=role, video_id=video["video_id"], uri=video["uri"],
        source_start_s=source_from, source_end_s=source_to, start_s=timeline_start, end_s=timeline_end,
        clip_ids=[c["clip_id"] for c in clips_overlapping(run, source_from, source_to)], overlay=overlay,
    )


def _overlaid_haystack(video, run, source_start, haystack_s,
                       needles: Sequence[tuple[Span, TextOverlay]]) -> list[Segment]:
    """Haystack pieces with the given overlays over their spans (needles sorted, disjoint)."""
    segments, cursor = [], 0.0
    for span, overlay in needles:
        if span.start_s > cursor:
            segments.append(_haystack_piece(video, run, source_start, cursor, span.start_s))
        segments.append(_haystack_piece(video, run, source_start, span.start_s, span.end_s, overlay, "needle"))
        cursor = span.end_s
    if haystack_s > cursor:
        segments.append(_haystack_piece(video, run, source_start, cursor, haystack_s))
    return segments


def _rendered_probe(base: dict, rng: random.Random, config: NiahConfig,
                    depth: float) -> tuple[list[Segment], list[Needle]]:
    video, run, source_start, haystack_s, fps, width, height = (
        base[k] for k in ("video", "run", "source_start", "haystack_s", "fps", "width", "height"))
    length = _needle_length(rng, config.needle_s, fps, haystack_s)
    start = snap(depth * (haystack_s - length), fps)
    span = Span(start_s=start, end_s=snap(start + length, fps))
    overlay = _overlay(_needle_text(rng, config, set()), width, height)
    needle = Needle(kind="rendered", span=span, depth=depth, video_id=video["video_id"], text=overlay.text)
    return _overlaid_haystack(video, run, source_start, haystack_s, [(span, overlay)]), [needle]


def _multi_probe(base: dict, rng: random.Random, config: NiahConfig) -> tuple[list[Segment], list[Needle]]:
    """k words (uniform over `multi_counts`), one per equal slot of the haystack, at a random
    place inside each slot."""
    video, run, source_start, haystack_s, fps, width, height = (
        base[k] for k in ("video", "run", "source_start", "haystack_s", "fps", "width", "height"))
    k = rng.randint(*config.multi_counts)
    slot = haystack_s / k
    taken: set[str] = set()
    placed, needles = [], []
    for j in range(k):
        slot_start = snap(j * slot, fps)
        slot_end = snap((j + 1) * slot, fps)
        length = _needle_length(rng, config.needle_s, fps, (slot_end - slot_start) / 2)
        start = snap(rng.uniform(slot_start, slot_end - length), fps)
        start = min(max(start, slot_start), slot_end - length)
        span = Span(start_s=start, end_s=snap(start + length, fps))
        overlay = _overlay(_needle_text(rng, config, taken, kinds=["word"]), width, height)
        placed.append((span, overlay))
        depth = start / (haystack_s - length) if haystack_s > length else 0.0
        needles.append(Needle(kind="rendered", span=span, depth=round(min(1.0, depth), 6),
                              video_id=video["video_id"], text=overlay.text))
    return _overlaid_haystack(video, run, source_start, haystack_s, placed), needles


def _foreign_probe(base: dict, rng: random.Random, config: NiahConfig, depth: float,
                   candidates: Sequence[Mapping[str, Any]]) -> tuple[list[Segment], list[Needle]]:
    """Splice the middle of a foreign clip in at the depth point of a haystack trimmed by the
    needle's length, so the probe lasts the grid length whatever the needle's (its duration
    says nothing about the needle)."""
    video, run, source_start, haystack_s, fps = (base[k] for k in ("video", "run", "source_start", "haystack_s", "fps"))
    entry = rng.choice(candidates)
    clip_s = float(entry["end_s"]) - float(entry["start_s"])
    length = _needle_length(rng, config.foreign_s, fps, min(clip_s, haystack_s / 2))
    length = min(length, math.floor(clip_s * fps + 1e-6) / fps)
    own_s = snap(haystack_s - length, fps)
    at = snap(depth * own_s, fps)
    foreign_start = float(entry["start_s"]) + math.floor((clip_s - length) / 2 * fps + 1e-6) / fps
    span = Span(start_s=at, end_s=snap(at + length, fps))
    segments = []
    if at > 0:
        segments.append(_haystack_piece(video, run, source_start, 0.0, at))
    segments.append(Segment(
        role="needle", video_id=entry["video_id"], uri=entry["uri"], source_start_s=foreign_start,
        source_end_s=foreign_start + length, start_s=at, end_s=span.end_s, clip_ids=[entry["clip_id"]],
    ))
    if at < own_s:
        tail = _haystack_piece(video, run, source_start, at, own_s)
        segments.append(tail.model_copy(update={"start_s": span.end_s, "end_s": snap(own_s + length, fps)}))
    needle = Needle(kind="foreign", span=span, depth=depth, video_id=entry["video_id"],
                    clip_id=entry["clip_id"], caption=entry.get("caption"))
    return segments, [needle]


def _own_footage_end(segments: Sequence[Segment], video_id: str) -> float:
    """Where the haystack's own footage ends in its source (foreign probes use less than the grid length)."""
    return max(s.source_end_s for s in segments if s.video_id == video_id)


def plan_niah_probes(
    video: Mapping[str, Any],
    clips: Sequence[Clip],
    config: TasksConfig,
    foreign_pool: Sequence[Mapping[str, Any]] = (),
) -> list[ProbeSpec]:
    """Probe specs for one video: up to `probes_per_video` grid cells drawn with the seed.

    `clips` are this video's clip records; `foreign_pool` holds `foreign_candidate` entries of
    any videos (entries of other splits or of this video are ignored). Deterministic: the
    same records and config give the same specs, whatever the order of the inputs.
    """
    niah = config.niah
    if not (config.enabled and niah.enabled) or not clips or niah.probes_per_video == 0:
        return []
    video_id = video["video_id"]
    split = video["split"]
    runs = contiguous_runs(clips)
    fps, width, height = probe_geometry(video, niah)
    haystack_groups = {c.get("dup_group") for c in clips if c.get("dup_group") is not None}
    candidates = _eligible_foreign(foreign_pool, video_id, split, haystack_groups, niah.foreign_s[0])
    longest = max(run_span(run)[1] - run_span(run)[0] for run in runs)
    cells = grid_cells(niah, longest, multi_min_haystack_s(niah), bool(candidates))
    chooser = seeded_rng(config.seed, video_id, "niah-cells")
    chosen = sorted(chooser.sample(range(len(cells)), min(niah.probes_per_video, len(cells))))
    specs = []
    for position, cell_index in enumerate(chosen):
        haystack_target, kind, depth = cells[cell_index]
        rng = seeded_rng(config.seed, video_id, "niah", position, list(cells[cell_index]))
        haystack_s = frames_in(haystack_target, fps) / fps
        starts = _haystack_starts(runs, haystack_s, fps)
        if not starts:
            continue
        run_index, first = rng.choice(starts)
        source_start = grid_start(float(first["start_s"]), fps)
        base = dict(video=video, run=runs[run_index], source_start=source_start,
                    haystack_s=haystack_s, fps=fps, width=width, height=height)
        if kind == "rendered":
            segments, needles = _rendered_probe(base, rng, niah, depth)
        elif kind == "foreign":
            segments, needles = _foreign_probe(base, rng, niah, depth, candidates)
        else:
            segments, needles = _multi_probe(base, rng, niah)
        source_end = _own_footage_end(segments, video_id)
        haystack_clips = clips_overlapping(runs[run_index], source_start, source_end)
        specs.append(ProbeSpec(
            probe_id=child_id(video_id, "niah", position), video_id=video_id, split=split, kind=kind,
            haystack_s=haystack_s, depth=depth,
            haystack_source=Span(start_s=source_start, end_s=source_end),
            haystack_clip_ids=[c["clip_id"] for c in haystack_clips], needles=needles,
            edit=EditList(fps=fps, width=width, height=height, segments=segments), seed=config.seed,
        ))
    return specs


# --------------------------------------------------------------------------- questions


def probe_media(spec: ProbeSpec, config: TasksConfig) -> MediaRef:
    """How tasks point at a probe: its written MP4 path, or only its edit list (reference mode)."""
    uri = f"{config.niah.probe_dir}/{spec.probe_id}.mp4" if config.media_mode == "written" else None
    return MediaRef(kind="probe", video_id=spec.video_id, uri=uri, duration_s=spec.edit.duration_s,
                    probe_id=spec.probe_id, edit_list=spec.edit)


def _difficulty(haystack_s: float, needle_s: float, bonus: float = 0.0) -> float:
    """Harder as the needle gets smaller against the haystack: log ratio, 300x = 1."""
    ratio = max(1.0, haystack_s / max(needle_s, 1e-3))
    return round(min(1.0, math.log10(ratio) / math.log10(300.0) + bonus), 4)


def _spans_truth(needles: Sequence[Needle], duration_s: float) -> dict[str, Any]:
    """The needle spans and the probe's length (the reward subtracts what the whole video earns)."""
    return {"spans": [[round_time(n.span.start_s), round_time(n.span.end_s)] for n in needles],
            "duration_s": round_time(duration_s)}


def _options(rng: random.Random, answer: str, preferred: Sequence[str], fallback: Sequence[str],
             n: int) -> tuple[list[str], str] | None:
    """Shuffled options with `answer` among them and its letter; None without a distractor.

    Distractors come from `preferred` first (captions of the haystack itself: shown in the
    video, but not out of place), then from `fallback`.
    """
    seen = {normalize_text(answer)}
    chosen: list[str] = []
    for pool in (preferred, fallback):
        unique = []
        for text in pool:
            key = normalize_text(text)
            if key and key not in seen:
                seen.add(key)
                unique.append(text.strip())
        chosen += rng.sample(unique, min(n - 1 - len(chosen), len(unique)))
    if not chosen:
        return None
    options = chosen + [answer.strip()]
    rng.shuffle(options)
    return options, "ABCDEFGH"[options.index(answer.strip())]


def format_options(options: Sequence[str]) -> str:
    return "\n".join(f"{'ABCDEFGH'[i]}. {text}" for i, text in enumerate(options))


def probe_tasks(
    spec: ProbeSpec,
    config: TasksConfig,
    captions: Mapping[str, str] | None = None,
    extra_distractors: Sequence[str] = (),
) -> list[Task]:
    """The questions a probe answers by construction.

    `captions` maps clip ids to captions (haystack clips give distractors for the foreign
    content question); `extra_distractors` adds captions from elsewhere in the same split.
    """
    captions = captions or {}
    rng = seeded_rng(config.seed, spec.probe_id, "questions")
    media = [probe_media(spec, config)]
    video_ids = sorted({spec.video_id} | {n.video_id for n in spec.needles})
    needle_s = sum(n.span.duration_s for n in spec.needles) / len(spec.needles)
    meta = {
        "probe_kind": spec.kind, "haystack_s": spec.haystack_s, "depth": spec.depth,
        "haystack_source": [spec.haystack_source.start_s, spec.haystack_source.end_s],
        "needles": [n.model_dump() for n in spec.needles], "fps": spec.edit.fps, "quality": spec.quality,
    }
    common = dict(family="niah", video_id=spec.video_id, video_ids=video_ids, split=spec.split,
                  source_ids=[spec.probe_id, *spec.haystack_clip_ids, *[n.clip_id for n in spec.needles if n.clip_id]],
                  media=media, meta=meta)
    difficulty = _difficulty(spec.haystack_s, needle_s)
    tasks: list[Task] = []

    def add(suffix: str, **fields: Any) -> None:
        tasks.append(Task(task_id=f"{spec.probe_id}_{suffix}", kind=f"niah_{spec.kind}_{suffix}", **common, **fields))

    if spec.kind == "rendered":
        (needle,) = spec.needles
        add("text", question=rng.choice(RENDERED_TEXT_QUESTIONS), answer_format=TEXT_FORMAT,
            ground_truth=needle.text, answer=needle.text, reward_rule="exact", difficulty=difficulty)
        add("span", question=rng.choice(RENDERED_SPAN_QUESTIONS), answer_format=SPAN_FORMAT,
            ground_truth=_spans_truth(spec.needles, spec.edit.duration_s), answer=format_span(needle.span.start_s, needle.span.end_s),
            reward_rule="temporal_iou", difficulty=difficulty)
    elif spec.kind == "foreign":
        (needle,) = spec.needles
        add("span", question=rng.choice(FOREIGN_SPAN_QUESTIONS), answer_format=SPAN_FORMAT,
            ground_truth=_spans_truth(spec.needles, spec.edit.duration_s), answer=format_span(needle.span.start_s, needle.span.end_s),
            reward_rule="temporal_iou", difficulty=difficulty)
        own = [captions[c] for c in spec.haystack_clip_ids if captions.get(c)]
        choice = (_options(rng, needle.caption, own, extra_distractors, config.niah.choice_options)
                  if needle.caption else None)
        if choice:
            options, letter = choice
            add("content", question=f"{rng.choice(FOREIGN_CONTENT_QUESTIONS)}\n{format_options(options)}",
                answer_format=CHOICE_FORMAT, options=options,
                ground_truth={"answer": letter, "options": options},
                answer=f"{letter}. {options['ABCDEFGH'.index(letter)]}", reward_rule="choice", difficulty=difficulty)
    else:
        words = [n.text for n in spec.needles]
        bonus = 0.05 * (len(words) - 1)
        add("count", question=rng.choice(MULTI_COUNT_QUESTIONS), answer_format=COUNT_FORMAT,
            ground_truth=len(words), answer=str(len(words)), reward_rule="exact",
            difficulty=_difficulty(spec.haystack_s, needle_s, bonus))
        add("order", question=rng.choice(MULTI_ORDER_QUESTIONS), answer_format=ORDER_FORMAT,
            ground_truth=words, answer=", ".join(words), reward_rule="order",
            difficulty=_difficulty(spec.haystack_s, needle_s, bonus + 0.1))
        add("spans", question=rng.choice(MULTI_SPANS_QUESTIONS), answer_format=SPANS_FORMAT,
            ground_truth=_spans_truth(spec.needles, spec.edit.duration_s),
            answer=", ".join(format_span(n.span.start_s, n.span.end_s) for n in spec.needles),
            reward_rule="temporal_iou", difficulty=_difficulty(spec.haystack_s, needle_s, bonus + 0.1))
    return tasks

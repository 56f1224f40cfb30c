"""CLIP stage: the keyframe candidates of each scanned video (picked during its one decode
pass, so CLIP never decodes again) go through RunInference with the open_clip handler, and
come back grouped by video. Only this transform carries the accelerator resource hint."""

from __future__ import annotations

from typing import Iterator

import apache_beam as beam
import cv2
import numpy as np

from vidcorpus.config import BuildConfig
from vidcorpus.pipelines.scan import Scanned

CLIP_INPUT_SIDE = 224


class Embeddings:
    """CLIP embeddings of a video's keyframe candidates (rows aligned with `Scanned.candidates`),
    with their relevance to the configured text queries."""

    def __init__(self, matrix: np.ndarray, query_scores: np.ndarray | None):
        self.matrix = matrix                    # (candidates, dim), unit rows
        self.query_scores = query_scores        # (candidates, queries) or None

    @classmethod
    def of(cls, scanned: Scanned, by_index: dict[int, np.ndarray], text: np.ndarray | None) -> "Embeddings":
        matrix = np.stack([by_index[i] for i in range(len(scanned.candidates))]).astype(np.float32)
        return cls(matrix, matrix @ text.T if text is not None and len(text) else None)


def candidate_frames(scanned: Scanned) -> Iterator[tuple[tuple[str, int], np.ndarray]]:
    """((video_id, candidate index), RGB picture scaled so its short side is the CLIP input)."""
    for i, jpeg in enumerate(scanned.jpegs(scanned.candidates)):
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        scale = CLIP_INPUT_SIDE / min(h, w)
        if scale < 1:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        yield (scanned.item.video_id, i), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class EmbedCandidates(beam.PTransform):
    """PCollection[Scanned] -> PCollection[(video_id, {candidate index: unit embedding})]."""

    def __init__(self, cfg: BuildConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, scanned):
        # Beam's inference module imports torch: only builds with CLIP on pay for it.
        from apache_beam.ml.inference.base import RunInference

        from vidcorpus.scoring.clip import keyed_clip_handler

        return (scanned
                | "CandidateFrames" >> beam.FlatMap(candidate_frames)
                | "Clip" >> RunInference(keyed_clip_handler(self.cfg.clip_model))
                | "ByVideo" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
                | "GroupEmbeddings" >> beam.GroupByKey()
                | "AsDict" >> beam.MapTuple(lambda video_id, rows: (video_id, dict(rows))))


def text_embeddings(cfg: BuildConfig) -> np.ndarray | None:
    """Embeddings of `clip.queries`, computed once when the pipeline is built."""
    if not cfg.clip_model.enabled or not cfg.clip_model.queries:
        return None
    from vidcorpus.scoring.clip import embed_text_prompts
    return embed_text_prompts(cfg.clip_model, cfg.clip_model.queries)


def join_embeddings(element, text):
    """CoGroupByKey output → (Scanned, Embeddings) for videos that have both."""
    _, grouped = element
    for scanned in grouped["scanned"]:
        found = grouped["embeddings"]
        by_index = found[0] if found else {}
        if len(by_index) == len(scanned.candidates):
            yield scanned, Embeddings.of(scanned, by_index, text)
        else:
            yield scanned, None  # a video without candidates has nothing to embed

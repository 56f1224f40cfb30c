"""Shot detection with TransNetV2 (`scenes.detector: transnetv2` or `consensus`): each scanned
video's spooled 48×27 frames go through RunInference with the TransNetV2 handler, and the
model's cuts and gradual transitions replace (or, for consensus, merge with) the pass's cuts.
Only this transform and CLIP's carry the accelerator resource hint."""

from __future__ import annotations

import dataclasses
import logging

import apache_beam as beam

from vidcorpus import storage
from vidcorpus.config import BuildConfig
from vidcorpus.config.build import ScenesConfig
from vidcorpus.pipelines.scan import Scanned
from vidcorpus.pipelines.staging import video_result
from vidcorpus.schemas.records import failure_row
from vidcorpus.scoring.shot_boundaries import merge_cuts, shot_boundaries

log = logging.getLogger(__name__)


def model_threshold(scenes: ScenesConfig) -> float:
    """`scenes.threshold` is the model's with `transnetv2`, the content detector's with `consensus`."""
    if scenes.detector == "transnetv2" and scenes.threshold is not None:
        return scenes.threshold
    return scenes.transnet.threshold


def with_model_cuts(scanned: Scanned, probabilities, scenes: ScenesConfig) -> Scanned:
    """`scanned` with the cuts and transitions read from the model's per-frame probabilities."""
    scan, tn = scanned.scan, scenes.transnet
    found = shot_boundaries(probabilities.single, probabilities.many, scan.times, scan.end_time,
                            model_threshold(scenes), tn.span_threshold, tn.transition_min_s)
    if scenes.detector == "consensus":
        found = merge_cuts(found, scan.cuts, scan.times, tn.consensus_tolerance_s, tn.consensus_rule)
    scan = dataclasses.replace(scan, cuts=found.cuts, transitions=found.transitions)
    return dataclasses.replace(scanned, scan=scan)


class ApplyShots(beam.DoFn):
    """(Scanned, probabilities) -> Scanned with model cuts, or a failure result (tag `done`);
    the frame spool is removed once read."""

    def __init__(self, scenes: ScenesConfig):
        self.scenes = scenes

    def process(self, element):
        scanned, probabilities = element
        storage.delete(scanned.shot_frames.uri)
        if isinstance(probabilities, Exception):
            item = scanned.item
            log.warning("%s failed at scenes: %s: %s", item.uri, type(probabilities).__name__, probabilities)
            yield beam.pvalue.TaggedOutput(
                "done", video_result(failures=[failure_row(item.uri, "scenes", probabilities, item.video_id)]))
            return
        yield with_model_cuts(scanned, probabilities, self.scenes)


class DetectShots(beam.PTransform):
    """PCollection[Scanned] -> tagged outputs `scanned` (with model cuts) and `done` (failures)."""

    def __init__(self, cfg: BuildConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, scanned):
        # Beam's inference module imports torch: only builds with a model detector pay for it.
        from apache_beam.ml.inference.base import RunInference

        from vidcorpus.scoring.transnet import check_installed, keyed_transnet_handler

        check_installed()

        return (scanned
                | "KeyByVideo" >> beam.Map(lambda s: (s, s.shot_frames))
                | "TransNetV2" >> RunInference(keyed_transnet_handler(self.cfg.scenes.transnet))
                | "ApplyShots" >> beam.ParDo(ApplyShots(self.cfg.scenes)).with_outputs("done", main="scanned"))

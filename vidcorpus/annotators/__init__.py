"""LLM annotators over any OpenAI-compatible endpoint: captions, summaries, grounded QA, CoT, checks.

The pipeline needs three things from here: `AnnotatorConfig` (the `llm:` config section),
`skipped_reason` (whether an endpoint is configured, and if not, why the LLM stages are
skipped), and `VideoAnnotator` (built once per worker; `annotate` turns one video's records
and keyframe JPEGs into annotation rows, failure rows and usage totals).
"""

from vidcorpus.annotators.client import LLMClient, LLMFailure, LLMRequest, LLMResult, Usage
from vidcorpus.annotators.config import AnnotatorConfig, EndpointConfig, endpoint_configured, skipped_reason
from vidcorpus.annotators.records import KINDS, annotation_id
from vidcorpus.annotators.video import VideoAnnotator, annotate_video

__all__ = [
    "KINDS",
    "AnnotatorConfig",
    "EndpointConfig",
    "LLMClient",
    "LLMFailure",
    "LLMRequest",
    "LLMResult",
    "Usage",
    "VideoAnnotator",
    "annotate_video",
    "annotation_id",
    "endpoint_configured",
    "skipped_reason",
]

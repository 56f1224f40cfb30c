"""LLM annotators over any OpenAI-compatible endpoint: captions, summaries, grounded QA, CoT, checks.

The pipeline needs one thing from here: `VideoAnnotator` (built once per worker; `annotate`
turns one video's records and keyframe JPEGs into annotation rows, failure rows and usage
totals). The `llm:` config section and endpoint resolution live in `vidcorpus.config.llm`.
"""

from vidcorpus.annotators.video import VideoAnnotator, annotate_video

__all__ = ["VideoAnnotator", "annotate_video"]

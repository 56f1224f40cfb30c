"""vidcorpus: raw videos in, a versioned training corpus for long-video language models out."""

__version__ = "0.1.0"

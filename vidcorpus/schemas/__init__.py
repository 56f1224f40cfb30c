"""Record types, their Arrow schemas and validation."""

from vidcorpus.schemas.tables import CLIPS, FAILURES, TABLES, VIDEOS
from vidcorpus.schemas.validate import RecordError, check_record

__all__ = ["CLIPS", "FAILURES", "TABLES", "VIDEOS", "RecordError", "check_record"]

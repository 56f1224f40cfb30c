"""Release publishing: the dataset card and the Hugging Face Hub upload."""

from vidcorpus.publish.card import render_card, write_card
from vidcorpus.publish.hub import PlannedFile, PublishPlan, ReleaseInvalid, plan_upload, publish

__all__ = ["PlannedFile", "PublishPlan", "ReleaseInvalid", "plan_upload", "publish", "render_card", "write_card"]

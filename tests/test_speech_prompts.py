"""What is said reaches the annotators: caption, summary, QA and visual-check prompts carry the
clip's transcript lines, marked as speech and timed; clips without speech say so."""

import io

from PIL import Image

from vidcorpus.annotators.captions import ClipCaption, Part, caption_request
from vidcorpus.annotators.frames import Frame
from vidcorpus.annotators.qa import EvidenceSpan, QAItem, qa_request
from vidcorpus.annotators.summaries import chunk_request
from vidcorpus.annotators.verifiers import visual_request
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.pipelines.annotate import with_speech_lines

VIDEO = {"video_id": "v", "duration_s": 8.0, "audio_streams": []}
CLIPS = [{"clip_id": "v_0000", "index": 0, "start_s": 0.0, "end_s": 4.0},
         {"clip_id": "v_0001", "index": 1, "start_s": 4.0, "end_s": 8.0}]
TRANSCRIPTS = [
    {"video_id": "v", "source": "sidecar", "language": "en", "start_s": 0.5, "end_s": 1.5, "text": "put the kettle on"},
    {"video_id": "v", "source": "sidecar", "language": "en", "start_s": 2.0, "end_s": 3.0, "text": "it is boiling"},
    {"video_id": "v", "source": "sidecar", "language": "fr", "start_s": 0.5, "end_s": 1.5, "text": "mets la bouilloire"},
]


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 90, 90)).save(out, "JPEG")
    return out.getvalue()


def user_text(request) -> str:
    content = request.messages[-1]["content"]
    return content if isinstance(content, str) else "\n".join(p["text"] for p in content if p["type"] == "text")


def test_clips_get_the_timed_lines_of_the_primary_track_inside_them():
    clips = with_speech_lines(CLIPS, TRANSCRIPTS, VIDEO)
    assert clips[0]["speech_lines"] == "[0.5-1.5 s] put the kettle on\n[2.0-3.0 s] it is boiling"
    assert clips[1]["speech_lines"] == ""


def test_caption_summary_qa_and_visual_prompts_carry_the_speech():
    config = AnnotatorConfig()
    clips = with_speech_lines(CLIPS, TRANSCRIPTS, VIDEO)
    frames = {c["clip_id"]: [Frame(c["start_s"] + 1, jpeg())] for c in clips}
    caption = user_text(caption_request(VIDEO, clips[0], Part(frames["v_0000"], 0, 1), None, config))
    assert "Speech in this clip" in caption and "[0.5-1.5 s] put the kettle on" in caption
    assert "No speech was transcribed in this clip." in user_text(
        caption_request(VIDEO, clips[1], Part(frames["v_0001"], 0, 1), None, config))
    captioned = [(c, ClipCaption(changes_since_previous=None, caption="A kitchen.")) for c in clips]
    assert "  speech [2.0-3.0 s] it is boiling" in user_text(chunk_request(VIDEO, captioned, 0))
    qa = user_text(qa_request(VIDEO, captioned, None, 2, frames, config))
    assert "  speech [0.5-1.5 s] put the kettle on" in qa and 'marked "speech"' in qa
    item = QAItem(question="What is put on?", options=None, answer="the kettle", question_type="descriptive",
                  evidence=[EvidenceSpan(clip_id="v_0000", start_s=0.5, end_s=1.5)])
    visual = user_text(visual_request(item, "q", frames, config, {c["clip_id"]: c for c in clips}))
    assert "Speech, as [start-end s] text:\n[0.5-1.5 s] put the kettle on" in visual

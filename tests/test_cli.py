"""The command line as a user meets it: exit codes and messages."""

from pathlib import Path

import apache_beam as beam
import pytest
from conftest import TINY

from vidcorpus.cli import main


def test_unknown_config_key_fails_with_its_name(videos, tmp_path, capsys):
    code = main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(tmp_path), "--set", "scenes.treshold=3"])
    assert code == 2
    assert "unknown config key: scenes.treshold" in capsys.readouterr().err


def test_build_validate_inspect_and_a_tampered_release(videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(out), "--config", str(TINY),
                 "--name", "demo", "--version", "0.1.0"]) == 0
    release = out / "demo" / "0.1.0"
    assert "3 clips" in capsys.readouterr().out
    assert main(["validate", str(release)]) == 0
    assert main(["inspect", str(release)]) == 0
    assert '"version": "0.1.0"' in capsys.readouterr().out
    shard = next((release / "shards").glob("train-*.tar"))
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x01")
    assert main(["validate", str(release)]) == 1
    assert "sha256" in capsys.readouterr().err
    assert main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(out), "--config", str(TINY),
                 "--name", "demo", "--version", "0.1.0"]) == 2
    assert "never modified" in capsys.readouterr().err


# --- the first hour: problems known before running end the command at once, plainly ----------

def _one_paragraph(err: str) -> str:
    assert "Traceback" not in err and "[while running" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def no_pipeline(monkeypatch):
    """Fails the test if a Beam pipeline is started."""
    def started(*args, **kwargs):
        raise AssertionError("the pipeline must not start")
    monkeypatch.setattr(beam.Pipeline, "run", started)


def test_clip_weights_neither_cached_nor_reachable_stop_the_build_before_it_starts(
        videos, tmp_path, capsys, monkeypatch, no_pipeline):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing answers
    out = tmp_path / "out"
    code = main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(out),
                 "--set", "clip.enabled=true", "--set", f"clip.cache_dir={tmp_path / 'empty-cache'}"])
    line = _one_paragraph(capsys.readouterr().err)
    assert code == 1
    assert line.startswith("vidcorpus: ClipWeightsUnavailable: No CLIP weights for clip.model='ViT-B-32'")
    assert "not in the cache and 127.0.0.1:9 cannot be reached" in line and "vidcorpus models fetch" in line
    assert not out.exists()


def test_verbose_after_the_subcommand_adds_the_traceback(videos, tmp_path, capsys, monkeypatch, no_pipeline):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    assert main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(tmp_path / "out"),
                 "--set", "clip.enabled=true", "--set", f"clip.cache_dir={tmp_path}", "-v"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("vidcorpus: ClipWeightsUnavailable")


def test_a_missing_checkpoint_fails_when_the_config_is_read(videos, tmp_path, capsys):
    code = main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(tmp_path / "out"),
                 "--set", "clip.enabled=true", "--set", f"clip.checkpoint_path={tmp_path / 'nope.pt'}"])
    assert code == 2
    assert _one_paragraph(capsys.readouterr().err) == (
        f"vidcorpus: clip.checkpoint_path '{tmp_path / 'nope.pt'}' is not a file on this machine")


def test_no_inputs_is_an_error_unless_allowed_and_leaves_the_version_free(videos, tmp_path, capsys, no_pipeline):
    out = tmp_path / "out"
    typo = str(videos["cuts.mp4"].parent / "*.mp5")
    args = ["build", "--input", typo, "--output", str(out), "--name", "d", "--version", "1.0.0"]
    assert main(args) == 2
    line = _one_paragraph(capsys.readouterr().err)
    assert line.startswith(f"vidcorpus: no videos found at {typo}") and "--allow-empty" in line
    assert not out.exists()


def test_allow_empty_builds_an_empty_release(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert main(["-q", "build", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                 "--config", str(TINY), "--allow-empty"]) == 0
    assert ": 0 videos, 0 clips" in capsys.readouterr().out


def test_a_failure_inside_a_beam_step_is_reported_once_with_its_own_message(videos, tmp_path, capsys, monkeypatch):
    import vidcorpus.pipelines.build as build_module

    def broken(*args, **kwargs):
        raise ValueError("the shard writer broke")

    monkeypatch.setattr(build_module, "write_file", broken)
    code = main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(tmp_path / "out"),
                 "--config", str(TINY), "-q"])
    assert code == 1
    assert _one_paragraph(capsys.readouterr().err) == "vidcorpus: ValueError: the shard writer broke"


def test_quiet_anywhere_leaves_stderr_empty(videos, tmp_path, capsys):
    assert main(["build", "--input", str(videos["cuts.mp4"]), "--output", str(tmp_path / "out"),
                 "--config", str(TINY), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "3 clips" in captured.out


def test_original_message_reads_a_worker_traceback():
    from vidcorpus.pipelines.errors import original_message

    worker = RuntimeError(
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in setup\n"
        "vidcorpus.scoring.clip.ClipWeightsUnavailable: No CLIP weights here\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n  File \"y.py\", line 2\n"
        "vidcorpus.scoring.clip.ClipWeightsUnavailable: No CLIP weights here [while running 'Embed/Clip']\n")
    assert original_message(worker) == "ClipWeightsUnavailable: No CLIP weights here"
    try:
        try:
            raise KeyError("video_id")
        except KeyError as inner:
            raise KeyError("video_id [while running 'Segment']") from inner
    except KeyError as outer:
        assert original_message(outer) == "KeyError: 'video_id'"


def _hub_cache_with(cache, repo: str, filename: str) -> Path:
    """The Hugging Face cache layout `models--org--name/{refs/main, snapshots/<commit>/file}`."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    weights = folder / "snapshots" / ("0" * 40) / filename
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    return weights


def test_models_fetch_finds_cached_weights_offline_and_says_plainly_when_it_cannot(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    cached = _hub_cache_with(tmp_path / "cache", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")
    assert main(["models", "fetch", "--set", f"clip.cache_dir={tmp_path / 'cache'}"]) == 0
    assert capsys.readouterr().out == f"CLIP ViT-B-32 weights: {cached}\n"
    assert main(["models", "fetch", "--set", f"clip.cache_dir={tmp_path / 'empty'}", "-q"]) == 1
    line = _one_paragraph(capsys.readouterr().err)
    assert line.startswith("vidcorpus: ClipWeightsUnavailable:") and "127.0.0.1:9 cannot be reached" in line

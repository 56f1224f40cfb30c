"""The command line as a user meets it: exit codes and messages."""

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

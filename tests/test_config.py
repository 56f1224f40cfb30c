from pathlib import Path

import pytest
import yaml

from vidcorpus.config import BuildConfig, ConfigError, config_to_dict, load_config

REPO = Path(__file__).resolve().parents[1]


def test_default_recipe_spells_out_the_embedded_defaults():
    assert load_config(REPO / "configs" / "default.yaml") == BuildConfig()


def test_every_recipe_loads():
    for recipe in (REPO / "configs").glob("*.yaml"):
        load_config(recipe)


def test_unknown_key_is_an_error_that_names_it(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({"scenes": {"detectr": "content"}}))
    with pytest.raises(ConfigError, match=r"unknown config key: scenes\.detectr"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"unknown config key: keyframes\.kk"):
        load_config(None, ["keyframes.kk=3"])


def test_overrides_apply_in_order_with_yaml_typing():
    cfg = load_config(None, ["scenes.detector=adaptive", "keyframes.k=5", "scenes.max_scene_s=30",
                             "keyframes.k=4"])
    assert cfg.scenes.detector == "adaptive"
    assert cfg.keyframes.k == 4
    assert cfg.scenes.max_scene_s == 30.0


def test_invalid_values_are_rejected_with_the_key():
    with pytest.raises(ConfigError, match=r"scenes\.detector"):
        load_config(None, ["scenes.detector=magic"])
    with pytest.raises(ConfigError, match="splits must sum to 1"):
        load_config(None, ["shards.splits={train: 0.5}"])


def test_yaml_off_means_off():
    assert load_config(None, ["clips.mode=off"]).clip_mp4.mode == "off"


def test_default_recipe_names_every_key():
    """Every key a recipe may set appears in configs/default.yaml (dataflow: has its own recipe;
    tasks.splits follows shards.splits)."""
    def leaves(node, prefix=""):
        if isinstance(node, dict) and node and prefix not in ("shards.splits", "llm.prompt_versions"):
            for key, value in node.items():
                yield from leaves(value, f"{prefix}.{key}" if prefix else key)
        else:
            yield prefix

    spelled = set(leaves(yaml.safe_load((REPO / "configs" / "default.yaml").read_text())))
    every = {k for k in leaves(config_to_dict(BuildConfig())) if not k.startswith(("dataflow", "tasks.splits"))}
    assert sorted(every - spelled) == []

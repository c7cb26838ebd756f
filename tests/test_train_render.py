"""Every render setting in training: a `[data.render]` table in recipes, `--set data.render.KEY=...`,
`data.representation`, and the run finding or building the store with exactly those settings."""

from __future__ import annotations

import tomllib

import pytest

from sconet.cache import find_cache, open_cache
from sconet.render import RenderConfig
from sconet.training import ConfigError, apply_overrides, config_from_dict, load_recipe, to_toml
from sconet.training.data import prepare_data


def _recipe(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_render_table_in_recipes_merges_along_the_base_chain(tmp_path):
    _recipe(tmp_path, "base", 'base = "demo-cpu"\n[data.render]\nsigma_limb = 12\ngeometry = "aspect"\n')
    child = _recipe(
        tmp_path, "child", 'base = "base.toml"\n[data.render]\nimpute = "none"\nsigma_limb = 10.5\n'
    )
    config = load_recipe(child)
    assert config.data.render == {"sigma_limb": 10.5, "geometry": "aspect", "impute": "none"}
    assert config.data.render_spec().resolve() == RenderConfig(
        sigma_limb=10.5, geometry="aspect", impute="none"
    )
    # --set merges single keys (TOML values), a table value merges several, the shorthand wins
    config = apply_overrides(
        config,
        [
            "data.render.sigma_joint=6",
            'data.render={alignment = "per-channel"}',
            "data.representation=head-lite",
        ],
    )
    assert config.data.render == {
        "sigma_limb": 10.5,
        "geometry": "aspect",
        "impute": "none",
        "sigma_joint": 6,
        "alignment": "per-channel",
    }
    want = RenderConfig(
        representation="head-lite", sigma_limb=10.5, sigma_joint=6.0, geometry="aspect",
        alignment="per-channel", impute="none",
    )  # fmt: skip
    assert config.data.render_spec().resolve() == want
    # the resolved recipe written as TOML reads back the same
    again = config_from_dict(tomllib.loads(to_toml(config)))
    assert again.data.render == config.data.render and again.data.representation == "head-lite"
    assert again.data.render_spec().resolve() == want


def test_recipes_state_no_render_settings_of_their_own():
    for name in ("sgd", "adamw-cosine", "drf-warmstart", "demo-cpu"):
        data = load_recipe(name).data
        assert data.preset is None and data.render == {} and data.representation is None, name
        assert not data.render_spec().stated
        assert data.render_spec().resolve() == RenderConfig()  # body-only, 15 / 8, square, shared, linear


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.render.sigma=3", "unknown render setting(s) ['sigma']"),
        ("data.render.impute=cubic", "impute must be one of"),
        ("data.render.sigma_limb=-1", "sigma_limb must be a finite number > 0"),
        ("data.render=3", "data.render: expected a table of keys"),
        ("data.representation=no-such-thing", "data.render / data.preset"),
    ],
)
def test_bad_render_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError) as info:
        apply_overrides(load_recipe("demo-cpu"), [override])
    assert message in str(info.value)


def test_the_run_finds_or_builds_the_store_of_its_settings(small_dataset, small_split, cache_root_dir):
    config = apply_overrides(
        load_recipe("demo-cpu"),
        [
            ("data", "poses", str(small_dataset)),
            ("data", "split", str(small_split)),
            "data.render.sigma_joint=6",
            'data.render.geometry="aspect"',
        ],
    )
    want = RenderConfig(sigma_joint=6.0, geometry="aspect")
    assert find_cache(want, poses=small_dataset) is None
    said: list[str] = []
    first = prepare_data(config, said.append)
    assert any("building it now" in m and "sigma limb 15.0 / joint 6.0" in m for m in said)
    assert first.store.render_config == want and first.store.path == find_cache(want, poses=small_dataset)
    assert first.store.attrs["split"] == small_split.stem
    said.clear()
    again = prepare_data(config, said.append)
    assert again.store.path == first.store.path and not any("building" in m for m in said)
    assert open_cache(again.store.path).fingerprint == first.store.fingerprint


def test_cli_print_config_shows_the_render_table(sconet_cli):
    done = sconet_cli(
        "train", "--recipe", "demo-cpu", "--representation", "full-body", "--set", "data.render.sigma_limb=9",
        "--print-config",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = tomllib.loads(done.stdout)
    assert doc["data"]["render"] == {"sigma_limb": 9} and doc["data"]["representation"] == "full-body"
    assert doc["run"]["sync_bn"] is True

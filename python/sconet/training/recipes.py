"""Named recipes, ``--set`` overrides and TOML output.

Recipes are TOML files with ``base = ...`` inheritance, shipped in ``sconet/recipes/``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from sconet.training.config import (
    _SECTION_TYPES,
    _TOP_LEVEL,
    SECTIONS,
    ConfigError,
    TrainConfig,
    config_from_dict,
)

# recipes
# ----------------------------------------------------------------------------------------------


def _recipes_dir() -> Path:
    return Path(str(resources.files("sconet") / "recipes"))


def list_recipes() -> list[str]:
    """Names of the recipes shipped with sconet."""
    return sorted(p.stem for p in _recipes_dir().glob("*.toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """The TOML file of a recipe name (shipped) or path."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    if text.endswith(".toml") or "/" in text or p.is_file():
        if not p.is_file():
            raise ConfigError(f"{p}: recipe file not found")
        return p
    shipped = _recipes_dir() / f"{text}.toml"
    if not shipped.is_file():
        raise ConfigError(
            f"unknown recipe {text!r}; shipped recipes: {', '.join(list_recipes())} (or give a .toml path)"
        )
    return shipped


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None


def load_recipe(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> TrainConfig:
    """Load a recipe by shipped name or TOML path (following ``base = ...``), validated."""
    path = recipe_path(name_or_path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: recipe inherits from itself (base chain {' -> '.join(map(str, _seen))})")
    data = _read_toml(path)
    base: TrainConfig | None = None
    if "base" in data:
        base_ref = data["base"]
        if not isinstance(base_ref, str):
            raise ConfigError(f"{path}: base must be a recipe name or path, got {base_ref!r}")
        if base_ref.endswith(".toml") and not Path(base_ref).is_absolute():
            base_ref = str(path.parent / base_ref)
        base = load_recipe(base_ref, (*_seen, path))
    try:
        config = config_from_dict(data, base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if "name" not in data:
        config.name = path.stem
    return config.validate() if not _seen else config


def recipe_keys(name_or_path: str | Path) -> set[str]:
    """The ``section.key`` names a recipe file sets itself, not through its ``base``: what its
    author chose for this recipe (a warm start takes the model shape from its checkpoint unless
    the recipe or the command line sets it)."""
    data = _read_toml(recipe_path(name_or_path))
    return {f"{section}.{key}" for section in SECTIONS if isinstance(data.get(section), dict)
            for key in data[section]}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# overrides
# ----------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` -> ``(section, key, value)``; the value is a TOML literal or a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    lhs, raw = text.split("=", 1)
    lhs = lhs.strip()
    if "." not in lhs:
        if lhs in _TOP_LEVEL:
            return "", lhs, _parse_value(raw)
        raise ConfigError(
            f"--set {text!r}: expected section.key=value with a section among {', '.join(SECTIONS)}"
        )
    section, key = lhs.split(".", 1)
    return section.strip(), key.strip(), _parse_value(raw)


def _parse_value(raw: str) -> Any:
    raw = raw.strip()
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: a string


def apply_overrides(config: TrainConfig, overrides: Iterable[str | tuple[str, str, Any]]) -> TrainConfig:
    """A copy of ``config`` with ``section.key=value`` overrides applied (validated)."""
    grouped: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for item in overrides:
        section, key, value = parse_override(item) if isinstance(item, str) else item
        if section == "":
            top[key] = value
            continue
        if section not in _SECTION_TYPES:
            raise ConfigError(
                f"unknown section {section!r} in --set {section}.{key}; known: {', '.join(SECTIONS)}"
            )
        grouped.setdefault(section, {})[key] = value
    return config_from_dict({**top, **grouped}, config).validate()


# ----------------------------------------------------------------------------------------------
# TOML output
# ----------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (``data.render``)
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    import json
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(config: TrainConfig) -> str:
    """The resolved config as TOML (``None`` values are left out: they mean 'default')."""
    d = config.to_dict()
    lines = [f"name = {_toml_value(d['name'])}", f"description = {_toml_value(d['description'])}"]
    for section in SECTIONS:
        lines.append("")
        lines.append(f"[{section}]")
        for key, value in d[section].items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"

"""Reading the configuration: TOML file, environment, systemd credentials and command line, every problem collected."""

from __future__ import annotations

import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edge.config.model import Config, union_variants
from edge.config.sections import FieldProblems

DEFAULT_CONFIG_PATHS = (Path("/etc/edge-detector/edge.toml"),)

# Environment variable -> (section, key). These are the names the seed programs used.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "KAFKA_TOPIC": ("kafka", "topic"),
    "KAFKA_OBJECTS_TOPIC": ("kafka", "objects_topic"),
    "KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "KAFKA_COMPRESSION_TYPE": ("kafka", "compression_type"),
    "KAFKA_BATCH_SIZE": ("kafka", "batch_size"),
    "INFERENCE_FPS": ("source", "inference_fps"),
    "VEHICLE_ID": ("vehicle", "vehicle_id"),
    "CAMERA_ID": ("vehicle", "camera_id"),
    "EDGE_MODEL": ("detector", "model"),
    "EDGE_STATE_DIR": ("state", "state_dir"),
    "EDGE_LOG_LEVEL": ("log", "level"),
}
# systemd LoadCredential= names read from $CREDENTIALS_DIRECTORY -> (section, key)
CREDENTIALS: dict[str, tuple[str, str]] = {
    "kafka_sasl_password": ("kafka", "sasl_password"),
    "kafka_sasl_username": ("kafka", "sasl_username"),
}


class ConfigError(Exception):
    """A configuration that cannot run; `problems` holds (key path, message) pairs.

    `origins` maps the key paths whose value came from elsewhere than `origin` (an environment variable, a
    systemd credential) to where it came from. When every problem has the same origin, that is `origin`
    (what printers show before each key); when they are mixed, the messages of the others say where their
    value came from."""

    def __init__(self, origin: str, problems: list[tuple[str, str]], origins: Mapping[str, str] | None = None):
        where = {key: (origins or {}).get(key, origin) for key, _ in problems}
        distinct = set(where.values())
        if len(distinct) == 1:
            self.origin = distinct.pop()
        elif all(o.startswith("environment ") for o in distinct):
            self.origin = "environment"
        else:
            self.origin = origin
        self.origins = where
        self.problems = [(k, m if where[k] == self.origin else f"{m} (from {where[k]})") for k, m in problems]
        super().__init__("\n".join(f"{where[key]}: {key}: {msg}" for key, msg in problems))


_ENV_INT = re.compile(r"[+-]?\d+", re.ASCII)
_ENV_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_ENV_BOOL = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _field_type(section: str, key: str) -> Any:
    """The annotation of a config field, with `| None` taken off."""
    model = Config.model_fields[section].annotation
    ann = model.model_fields[key].annotation  # type: ignore[union-attr]
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    return ann


def _from_env(section: str, key: str, raw: str) -> Any:
    """An environment string as its field's type (environment variables are text by nature); ValueError says
    what was expected. Strings, literals and secrets are passed on for the model to judge."""
    ann, text = _field_type(section, key), raw.strip()
    if ann is bool:
        if text.lower() not in _ENV_BOOL:
            raise ValueError(f"not true or false (got {raw!r})")
        return _ENV_BOOL[text.lower()]
    if ann is int:
        if not _ENV_INT.fullmatch(text):
            raise ValueError(f"not an integer (got {raw!r})")
        return int(text)
    if ann is float:
        if not _ENV_FLOAT.fullmatch(text) or not math.isfinite(float(text)):
            raise ValueError(f"not a number (got {raw!r})")
        return float(text)
    return raw


def _set(tree: dict[str, Any], section: str, key: str, value: Any) -> None:
    sub = tree.setdefault(section, {})
    if isinstance(sub, dict):
        sub[key] = value


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read FILE (or defaults), apply environment, credentials, then `overrides` ("section.key": value).

    Raises ConfigError naming every bad key.
    """
    env = os.environ if env is None else env
    origin = str(path) if path else "<defaults>"
    tree: dict[str, Any] = {} if path is None else _read_toml(path, origin)
    origins, problems = _merge_environment(tree, env)
    for dotted, value in (overrides or {}).items():  # first: a variant chosen here drops the others' keys
        section, _, key = dotted.partition(".")
        _choose_variant(tree, section, key, value)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        _set(tree, section, key, value)
        origins[dotted] = "command line"
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        problems += _problems(exc)
    if problems:
        raise ConfigError(origin, problems, origins)
    return cfg


def _read_toml(path: str | Path, origin: str) -> dict[str, Any]:
    """The file's TOML as a tree; ConfigError when it is missing, unreadable, not TOML or not UTF-8."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(origin, [("<file>", "no such file")]) from None
    except OSError as exc:
        raise ConfigError(origin, [("<file>", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(origin, [("<toml>", str(exc))]) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition: a Latin-1 file is unusable, not a crash
        raise ConfigError(origin, [("<file>", f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                                              f"{exc.start}): save the file as UTF-8")]) from None


def _merge_environment(tree: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Environment variables and systemd credentials into `tree`: {key path: origin} of what they set, and the
    (key path, problem) of environment values that are not of their key's type (those keys are left out)."""
    origins: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for name, (section, key) in ENV_OVERRIDES.items():
        if env.get(name, "") == "":
            continue
        origins[f"{section}.{key}"] = f"environment {name}"
        try:
            _set(tree, section, key, _from_env(section, key, env[name]))
        except ValueError as exc:
            problems.append((f"{section}.{key}", str(exc)))
            _unset(tree, section, key)  # the file's value would be blamed on the environment otherwise
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for name, (section, key) in CREDENTIALS.items():
            cred = Path(cred_dir) / name
            if cred.is_file():
                _set(tree, section, key, cred.read_text().strip())
                origins[f"{section}.{key}"] = f"systemd credential {name}"
    return origins, problems


def _choose_variant(tree: dict[str, Any], section: str, key: str, value: Any) -> None:
    """The command line chose the variant of a union section (`replay --gps-track`: gps.provider track): the
    settings the file (or environment) gave for other variants no longer apply and are left out."""
    variants = union_variants(section)
    sub = tree.get(section)
    if variants is None or key != variants[0] or not isinstance(sub, dict) or not isinstance(value, str) \
            or value not in variants[1]:
        return
    models = variants[1].values()
    tree[section] = {k: v for k, v in sub.items()  # a key of no variant stays, to be reported
                     if k in variants[1][value].model_fields or not any(k in m.model_fields for m in models)}


def _unset(tree: dict[str, Any], section: str, key: str) -> None:
    sub = tree.get(section)
    if isinstance(sub, dict):
        sub.pop(key, None)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(key path, message) for every error; a section's FieldProblems are spread over the keys they name. In a
    union section pydantic's path names the variant (gps.fixed.fixed_lat): the user's key path does not."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        variants = union_variants(loc[0]) if loc else None
        variant = loc.pop(1) if variants is not None and len(loc) > 1 else None
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblems):
            problems += [(".".join([*loc, name]), msg) for name, msg in cause.problems]
            continue
        if variants is not None and (named := _variant_problem(err, loc, variant, *variants)):
            problems.append(named)
            continue
        key = ".".join(loc) or "<root>"
        value = err.get("input")
        shown = "" if "password" in key or isinstance(value, dict) else f" (got {value!r})"
        problems.append((key, f"{err['msg']}{shown}"))
    return problems


def _variant_problem(err: Any, loc: list[str], variant: str | None, by: str,
                     models: dict[str, type[BaseModel]]) -> tuple[str, str] | None:
    """An error of a union section (gps, told apart `by` provider) in the user's terms: an unknown provider, a key
    the chosen provider needs, a key of another provider; None for the others (worded as usual)."""
    section, chosen = loc[0], f"{loc[0]}.{by}"
    if err["type"] == "union_tag_invalid" and isinstance(err.get("input"), dict):
        names = [repr(name) for name in models]
        return chosen, f"Input should be {', '.join(names[:-1])} or {names[-1]} (got {err['input'][by]!r})"
    if variant is None or len(loc) != 2:
        return None
    key = loc[1]
    if err["type"] == "missing":
        about = models[variant].model_fields[key].description
        return f"{section}.{key}", f"required when {chosen} is {variant!r}" + (f" ({about})" if about else "")
    owners = [repr(name) for name, model in models.items() if key in model.model_fields]
    if err["type"] == "extra_forbidden" and owners:
        return f"{section}.{key}", f"belongs to {chosen} {' or '.join(owners)} ({chosen} is {variant!r})"
    return None


def load_for_command(args: object, options: Mapping[str, str], **fixed: object) -> Config:
    """The configuration a command runs with: its --config file (or the default), with every command-line
    option in `options` (attribute name → "section.key") that was given, plus `fixed` ("section__key")."""
    overrides: dict[str, Any] = {key.replace("__", "."): value for key, value in fixed.items()}
    for name, dotted in options.items():
        value = getattr(args, name, None)
        if value is not None and value != "":
            overrides[dotted] = value
    return load_config(find_config_file(getattr(args, "config", None)), overrides=overrides)


def find_config_file(explicit: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The file to read: explicit argument, $EDGE_CONFIG, then /etc/edge-detector/edge.toml if present."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("EDGE_CONFIG"):
        return Path(env["EDGE_CONFIG"])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None

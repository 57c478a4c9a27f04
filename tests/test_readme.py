"""The README stays true: every server setting is listed, and the commands it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from modelherd.cli import main
from modelherd.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            inner = [annotation]
        if getattr(annotation, "__origin__", None) is dict:
            out.append(prefix + name)   # a map by name (registries, clusters, slack.repos): one row
            continue
        if inner:
            out += _settings(inner[0], f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_setting_is_documented():
    missing = [s for s in _settings(Settings) if f"`{s}`" not in README]
    assert missing == []


def test_every_command_is_documented():
    missing = [name for name in main.commands if not re.search(rf"`modelherd {re.escape(name)}\b", README)]
    assert missing == []


def _yaml_block(after_heading: str) -> str:
    return README.split(after_heading, 1)[1].split("```yaml", 1)[1].split("```", 1)[0]


def test_the_manifest_example_is_valid():
    from modelherd.loading import load_manifests

    manifests, findings = load_manifests("README.md", _yaml_block("## The manifest"))
    assert findings == [] and manifests[0].manifest.metadata.name == "fraud-detector"


def test_the_repository_settings_example_is_valid():
    from modelherd.repoconfig import parse_config

    config, findings = parse_config(_yaml_block("## Repository settings"))
    assert findings == [] and config.environment("production").protected


def test_every_repository_setting_is_in_the_example():
    from modelherd.repoconfig import EnvironmentConfig, RepoConfig

    block = _yaml_block("## Repository settings")
    keys = [*RepoConfig.model_fields, *EnvironmentConfig.model_fields]
    missing = [k for k in keys if not re.search(rf"(^|[\s{{,]){k}:", block, re.M)]
    assert missing == []

"""The vendored contract material (``tests/contracts/``) is complete, attributed, and never skipped."""

from __future__ import annotations

import re

import pytest

from tests.contracts import CONTRACTS_ROOT, MissingContract, contract_path, contract_text

#: Every folder holding material, each with a README naming source, license and how to refresh it.
MATERIAL = ["github", "github/webhooks", "gitlab", "gitlab/webhooks", "slack", "kserve", "kserve/status-samples"]


def test_missing_material_is_an_error_naming_the_file():
    with pytest.raises(MissingContract, match=r"github/no-such-description\.json\.gz"):
        contract_path("github", "no-such-description.json.gz")


def test_compressed_material_is_read_as_text():
    assert contract_text("slack", "slack_web_openapi_v2.json.gz").lstrip().startswith("{")


def test_every_material_folder_is_listed():
    folders = {p.relative_to(CONTRACTS_ROOT).as_posix() for p in CONTRACTS_ROOT.rglob("*")
               if p.is_dir() and p.name != "__pycache__" and p.parent.name != "webhooks"}
    assert folders == set(MATERIAL)


@pytest.mark.parametrize("folder", MATERIAL)
def test_each_folder_names_its_source_license_and_refresh(folder):
    readme = contract_text(folder, "README.md")
    assert "Source:" in readme and "License:" in readme and "## Refresh" in readme
    # The upstream license file next to the material; GitLab's description states its own (info.license).
    assert list(contract_path(folder).glob("LICENSE*")) or "info.license" in readme


def test_github_payloads_are_exactly_the_ones_in_the_source_map():
    root = contract_path("github", "webhooks")
    mapped = re.findall(r"^- `([^`]+\.json)` <- `", contract_text("github", "webhooks", "SOURCE.md"), re.M)
    assert sorted(mapped) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*.json"))


def test_gitlab_payloads_are_exactly_the_ones_in_the_source_table():
    root = contract_path("gitlab", "webhooks")
    listed = re.findall(r"^\| `([^`]+\.json)` \|", contract_text("gitlab", "webhooks", "SOURCE.md"), re.M)
    assert sorted(listed) == sorted(p.name for p in root.glob("*.json"))

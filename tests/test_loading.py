"""Loading manifests: every bad file gets one clear error at file:line:column, and no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelherd.checks import Position, Severity
from modelherd.loading import load_files, load_manifests
from modelherd.yamlsafe import MAX_BYTES

ROOT = Path(__file__).resolve().parents[1]
BAD = sorted((Path(__file__).parent / "corpus" / "bad").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
EXPECT = re.compile(rb"^# expect: (\d+):(\d+) (.+)$")


def _expectation(path: Path) -> tuple[Position, str]:
    first = path.read_bytes().split(b"\n", 1)[0]
    m = EXPECT.match(first)
    assert m, f"{path.name}: first line must be '# expect: LINE:COL text'"
    return Position(int(m.group(1)), int(m.group(2))), m.group(3).decode()


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_manifest_is_refused_at_its_position(path: Path):
    position, text = _expectation(path)
    manifests, findings = load_manifests(path.name, path.read_bytes())
    errors = [f for f in findings if f.severity is Severity.ERROR]
    assert errors, f"{path.name} was accepted"
    assert any(f.position == position and text in f.one_line() for f in errors), \
        "\n".join(f.one_line() for f in errors)
    assert all(f.file == path.name for f in errors)


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_validate_command_prints_one_line_per_error_and_no_traceback(path: Path):
    done = subprocess.run([sys.executable, "-m", "modelherd", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    position, _ = _expectation(path)
    assert f"{path}:{position}: error: " in done.stderr


def test_example_manifests_are_valid():
    manifests = [p for p in EXAMPLES if p.parent.name in ("models", "change")]
    assert manifests
    for path in manifests:
        loaded, findings = load_manifests(str(path), path.read_bytes())
        assert findings == [] and len(loaded) == 1, [f.one_line() for f in findings]


def test_billion_laughs_is_refused_before_expanding():
    bomb = (Path(__file__).parent / "corpus" / "bad" / "billion-laughs.yaml").read_bytes()
    _, findings = load_manifests("bomb.yaml", bomb)   # nine levels of nine would be 387 million strings
    assert "values" in findings[0].message


def test_huge_file_is_refused_before_parsing():
    huge = b"apiVersion: modelherd.dev/v1\n" + b"# padding\n" * (MAX_BYTES // 10 + 1)
    _, findings = load_manifests("huge.yaml", huge)
    assert findings[0].position == Position(1, 1)
    assert "limit" in findings[0].message


def test_several_documents_in_one_file_are_all_loaded():
    good = (ROOT / "examples" / "repo" / "models" / "fraud-detector.yaml").read_text()
    other = good.replace("name: fraud-detector\n", "name: fraud-detector-eu\n", 1)
    loaded, findings = load_manifests("two.yaml", good + "\n---\n" + other)
    assert findings == []
    assert [lm.manifest.metadata.name for lm in loaded] == ["fraud-detector", "fraud-detector-eu"]
    assert loaded[1].position("metadata", "name").line > good.count("\n")


def test_the_same_name_in_two_files_is_an_error_on_the_second():
    good = (ROOT / "examples" / "repo" / "models" / "fraud-detector.yaml").read_bytes()
    result = load_files({"a.yaml": good, "b.yaml": good, "gone.yaml": None})
    assert len(result.manifests) == 1
    [finding] = result.findings
    assert finding.file == "b.yaml" and "also defined in a.yaml" in finding.message


def test_anchors_and_merge_keys_are_supported():
    text = """
apiVersion: modelherd.dev/v1
kind: ModelDeployment
metadata: {name: m}
spec:
  model: {name: m, version: 3}
  serving: {runtime: kserve, format: sklearn}
  environments:
    staging: &env {cluster: onprem-a, namespace: ns}
    production:
      <<: *env
      cluster: aws-eu-1
"""
    [lm], findings = load_manifests("m.yaml", text)
    assert findings == []
    prod = lm.manifest.spec.environments["production"]
    assert (prod.cluster, prod.namespace) == ("aws-eu-1", "ns")

"""`.modelherd.yaml`: defaults, promotion order, globs, and clear errors."""

from modelherd.repoconfig import DEFAULT, parse_config


def test_missing_file_gives_defaults_with_production_protected():
    config, findings = parse_config(None)
    assert findings == [] and config is DEFAULT
    assert [e.name for e in config.environments] == ["staging", "production"]
    assert config.environment("production").protected
    assert config.order("staging") < config.order("production") < config.order("unknown")


def test_manifest_globs():
    config, _ = parse_config("manifests: ['models/**/*.yaml', 'serving/*.yml']")
    assert config.is_manifest("models/a.yaml") and config.is_manifest("models/team/x/a.yaml")
    assert config.is_manifest("serving/b.yml") and not config.is_manifest("serving/deep/b.yml")
    assert not config.is_manifest("README.md")


def test_typo_is_an_error_at_its_line():
    config, [finding] = parse_config("version: 1\nenvironments:\n  - name: prod\n    protekted: true\n")
    assert config is DEFAULT
    assert (finding.position.line, finding.position.column) == (4, 5)
    assert "protekted" in finding.message


def test_duplicate_environment_is_refused():
    _, [finding] = parse_config("environments: [{name: a}, {name: a}]")
    assert "listed twice" in finding.message

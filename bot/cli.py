"""The ``modelherd`` command line. Each command is a thin shell over the same core the app uses."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelherd")
def main() -> None:
    """modelherd: model manifests validated, policy-checked, metric-gated, planned and deployed."""


if __name__ == "__main__":  # pragma: no cover
    main()

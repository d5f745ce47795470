"""Docs that must stay true: the configuration reference equals the Settings dataclass, README names every
command the CLI has, and every setting appears in .env.example."""

from __future__ import annotations

import re
from dataclasses import fields

from app.cli import build_parser
from app.settings import Settings, reference_table
from tests.conftest import ROOT


def test_configuration_reference_is_generated_from_settings():
    text = (ROOT / "docs" / "configuration.md").read_text()
    generated = text.split("<!-- generated: python -m app.settings -->\n", 1)[1].split("\n<!-- end generated -->")[0]
    assert generated == reference_table()


def test_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse keeps them here)
    for name, sub in commands.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]  # noqa: SLF001
        names = [f"mqnode {name} {child}" for child in nested[0].choices] if nested else [f"mqnode {name}"]
        for full in names:
            assert f"`{full}" in readme, f"README does not document {full}"


def test_env_example_lists_every_setting():
    example = (ROOT / ".env.example").read_text()
    for f in fields(Settings):
        assert re.search(rf"^#? ?{f.metadata['env']}=", example, re.M), f.metadata["env"]

"""The operator's files read from disk: the rules file and a folder of reference files.

The engine (adjudication/) parses their content and reads no file itself; claim files are read in
worker/intake.py and worker/service.py the same way (bytes in, parsed frames out)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from adjudication.reference import FILES, ignored_columns, parse_content
from adjudication.rules import Rules, RulesError, default_rules, parse_rules


def load_rules(path: Path | str | None = None) -> Rules:
    """Read and validate a rules file (TOML); the shipped default when no path is given."""
    if not path:
        return default_rules()
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as error:
        raise RulesError(f"rules file {source}: cannot be read ({error.strerror or type(error).__name__})") from None
    return parse_rules(data, str(source))


def read_reference_dir(folder: Path) -> dict[str, pl.DataFrame]:
    """The reference files present in `folder`, parsed (a file left out is simply absent)."""
    return {name: parse_content(name, (folder / name).read_bytes()) for name in FILES if (folder / name).exists()}


def ignored_reference_columns(folder: Path) -> dict[str, str]:
    """Per reference file in `folder` whose header has columns a load ignores: those columns, for a warning."""
    found = {name: ignored_columns(name, (folder / name).read_bytes()) for name in FILES if (folder / name).exists()}
    return {name: columns for name, columns in found.items() if columns}

"""MkDocs hooks for the documentation site (mkdocs.yml `hooks:`).

A page under docs/ may link to a repository file outside docs/ (`[the study](../examples/studies/x.toml)`): on
GitHub that link works, but the site does not serve the file, and `mkdocs build --strict` would fail on it. Such a
link, when its target exists in the repository, is rendered as the repository path in code (`examples/studies/x.toml`)
instead; a link to a missing file is left alone, so the strict build still fails on it (and tests/test_docs.py
reports it with its line)."""

from __future__ import annotations

import os
import re
from pathlib import Path

LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\((?!<)([^)\s#]+)(#[^)\s]*)?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)


def repository_link(text: str, target: str, page_dir: Path, docs_dir: Path, root: Path) -> str | None:
    """The code-span replacement of the link ``[text](target)`` on a page in ``page_dir``, or None to keep it: only a
    relative target that resolves outside ``docs_dir`` to an existing file or folder of the repository ``root``."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target):  # https:, mailto:
        return None
    full = Path(os.path.normpath(page_dir / target))
    if full.is_relative_to(docs_dir) or not full.is_relative_to(root) or not full.exists():
        return None
    path = full.relative_to(root).as_posix()
    plain = text.strip("`")
    return f"`{path}`" if plain in (path, target, full.name) else f"{text} (`{path}`)"


def rewrite(markdown: str, page_dir: Path, docs_dir: Path, root: Path) -> str:
    fences = [(m.start(), m.end()) for m in FENCE.finditer(markdown)]

    def one(m: re.Match) -> str:
        if any(a <= m.start() < b for a, b in fences):
            return m.group(0)
        new = repository_link(m.group(1), m.group(2), page_dir, docs_dir, root)
        return m.group(0) if new is None else new

    return LINK.sub(one, markdown)


def on_page_markdown(markdown, page, config, files):
    docs_dir = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    page_dir = (docs_dir / page.file.src_path).parent
    return rewrite(markdown, page_dir, docs_dir, root)

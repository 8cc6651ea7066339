"""The documentation references only what exists and cannot silently rot: every relative link, image and repository
path in README.md, CONTRIBUTING.md and docs/*.md resolves (a file, a folder, or a glob that matches); no file cites
the design notes that were never in the repository (the paper is cited as Suh, Simchowitz, Zhang and Tedrake, ICML
2022, arXiv 2202.00817); the README stays an entry point whose one Python block is the one a test runs; the site's
nav (mkdocs.yml) holds every page and only pages that exist; every figure under docs/figures/ is made by a command
of scripts/regenerate_figures.py, and those commands are valid; every example script is run by a test.

The site itself is built by CI with `mkdocs build --strict` (the [docs] extra): broken links, anchors, included
files and docstring references fail it."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# what a repository path can start with: the root's own entries, less what git ignores or tools make
NOT_SOURCES = {".git", ".hypothesis", ".pytest_cache", "runs", "build", "dist", ".venv", "venv", "__pycache__",
               "site"}  # site: what `mkdocs build` writes

LINK = re.compile(r"!?\[(?:[^\]\n]|\](?!\())*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [t](target), ![a](src)
HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)
CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
PATH_TOKEN = re.compile(r"[A-Za-z0-9_.\-/*]+")
OUTPUT_FLAG = re.compile(r"(?:--out|-o|>>?)\s*$")  # a path after these is written by the command, not read
PLACEHOLDER = re.compile(r"[<>{}]|\.\.\.|…|(?:^|/)my_\w")  # my_oracle.py: a file the reader would write


def _tops(root: Path) -> set[str]:
    return {e.name for e in root.iterdir() if e.name not in NOT_SOURCES and not e.name.endswith(".egg-info")}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens, underscores kept), spaces to -."""
    text = re.sub(r"[`*_]{1,2}(?=\S)|(?<=\S)[`*_]{1,2}", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _exists(root: Path, base: Path, target: str) -> bool:
    """A file or folder at ``target`` (relative to ``base``, or to the repository root for a repository path),
    or, with a ``*``, a glob that matches something."""
    for start in (base, root):
        full = os.path.normpath(os.path.join(start, target))
        if ("*" in target and glob.glob(full)) or os.path.exists(full):
            return True
    return False


def broken_references(path: Path, root: Path = ROOT) -> list[str]:
    """Every reference in the markdown file ``path`` that points at nothing, as ``FILE:LINE: what``.

    Followed: markdown links and images (relative targets; ``#anchor`` parts against the target's headings) and
    HTML ``src``/``href``; inline code spans that are a repository path (no spaces, a ``/``, the first part one
    of the repository root's entries: `problems/tennis.toml`, `docs/figures/`; ``file::test`` and ``file:LINE``
    suffixes dropped); and, inside fenced blocks, words that are repository paths, except one written by the
    command (after ``--out``, ``-o`` or ``>``). Not followed: URLs, paths under ignored folders (`runs/`),
    placeholders (``<name>``, ``{x}``, ``...``)."""
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(root).as_posix()
    base = path.parent
    tops = _tops(root)
    out = []
    fences = [(m.start(), m.end()) for m in FENCE.finditer(text)]

    def fenced(i: int) -> bool:
        return any(a <= i < b for a, b in fences)

    for pattern, kind in ((LINK, "link"), (HTML_SRC, "link")):
        for m in pattern.finditer(text):
            if fenced(m.start()):
                continue
            target = m.group(1)
            if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = path if not file_part else Path(os.path.normpath(base / file_part))
            if file_part and not dest.exists():
                out.append(f"{rel}:{_line(text, m.start())}: {kind} {target!r}: no such file")
            elif anchor and dest.suffix == ".md" and dest.is_file() and anchor.lower() not in _anchors(dest):
                out.append(f"{rel}:{_line(text, m.start())}: {kind} {target!r}: no heading #{anchor} in {dest.name}")

    def repository_path(word: str) -> str | None:
        word = re.split(r"::|:\d+$", word)[0].rstrip(".,;:)")
        if "/" not in word or PLACEHOLDER.search(word) or word.split("/")[0] not in tops:
            return None
        return word

    for m in CODE_SPAN.finditer(text):
        if fenced(m.start()):
            continue
        span = m.group(1).strip()
        word = repository_path(span) if " " not in span else None
        if word is not None and not _exists(root, base, word):
            out.append(f"{rel}:{_line(text, m.start())}: path `{span}`: no such file or folder")

    for a, b in fences:
        for m in PATH_TOKEN.finditer(text, a, b):
            word = repository_path(m.group(0))
            before = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
            if word is None or OUTPUT_FLAG.search(before) or PLACEHOLDER.search(text[m.start():m.end() + 1]):
                continue
            if not _exists(root, base, word):
                out.append(f"{rel}:{_line(text, m.start())}: path {word!r} in a code block: no such file or folder")
    return out


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))]


def test_every_relative_reference_in_the_docs_exists():
    problems = [p for f in doc_files() for p in broken_references(f)]
    assert not problems, "references to nothing:\n" + "\n".join(problems)


def test_the_checker_finds_what_is_missing_and_leaves_commands_and_urls_alone(tmp_path):
    """The checker itself, on a small repository: each kind of broken reference is reported once, at its line;
    what exists, URLs, outputs, ignored folders and placeholders are not."""
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / "docs" / "figures" / "a.png").write_bytes(b"")
    (tmp_path / "problems").mkdir()
    (tmp_path / "problems" / "p.toml").write_text("")
    (tmp_path / "runs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## The `[system]` table\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("\n".join([
        "# Page",                                                          # 1
        "[fine](other.md) ![fine](figures/a.png) [fine](../problems/p.toml) [web](https://example.org/x.md)",
        "[anchor fine](other.md#the-system-table) [here](#page)",           # 3
        "[gone](missing.md) ![gone](figures/b.png)",                         # 4
        "[bad anchor](other.md#nowhere)",                                   # 5
        '<img src="figures/c.png">',                                       # 6
        "`problems/p.toml` `problems/*.toml` `docs/figures/` `runs/x/result.json` `problems/<name>.toml` "
        "`trajopt/oracles/my_oracle.py`",
        "`problems/q.toml` and `problems/*.xml`, `tests/test_x.py::test_y`",  # 8
        "`trajopt compare problems/q.toml`",                                # 9: a command in a span: not a path
        "```bash",                                                          # 10
        "trajopt compare problems/p.toml --out runs/new > docs/out.txt",    # 11
        "trajopt report problems/nope.toml -o docs/new.html",              # 12
        "trajopt solve problems/<file>.toml",                               # 13
        "```",
    ]) + "\n")
    found = broken_references(page, tmp_path)
    assert found == [
        "docs/page.md:4: link 'missing.md': no such file",
        "docs/page.md:4: link 'figures/b.png': no such file",
        "docs/page.md:5: link 'other.md#nowhere': no heading #nowhere in other.md",
        "docs/page.md:6: link 'figures/c.png': no such file",
        "docs/page.md:8: path `problems/q.toml`: no such file or folder",
        "docs/page.md:8: path `problems/*.xml`: no such file or folder",
        "docs/page.md:8: path `tests/test_x.py::test_y`: no such file or folder",
        "docs/page.md:12: path 'problems/nope.toml' in a code block: no such file or folder",
    ], found


# The lines helper A owns (issue #30: the lead rewrites them once A is done); empty this set then.
PENDING: set = set()
TEXT = {".py", ".md", ".toml", ".sh", ".txt", ".xml", ".cfg", ".ini", ".yml", ".yaml", ".json", ".html", ""}


def test_no_file_cites_design_notes_that_are_not_in_the_repository():
    """The README, docs, docstrings, problem files and tests once cited two design notes that were never
    committed; they cite the paper (with its section, equation and figure numbers) or the repository's docs."""
    names = ("PAPER" + ".md", "DESIGN" + ".md")  # spelled apart so that this file does not cite them
    citing = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in NOT_SOURCES and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix not in TEXT or path.stat().st_size > 5_000_000:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if any(n in text for n in names):
                citing.add(path.relative_to(ROOT).as_posix())
    assert not citing - PENDING, f"files that cite {' or '.join(names)} (not in the repository): {sorted(citing - PENDING)}"
    assert not PENDING - citing, f"no longer citing them: remove from PENDING: {sorted(PENDING - citing)}"


# ------------------------------------------------------------------------------------ the README, the site, figures

README_COMMANDS = ('pip install -e . && trajopt compare problems/pushing_stiff.toml',
                   'pip install -e ".[test]" && pytest')


def test_the_readme_is_an_entry_point_that_starts_with_the_two_commands():
    """At most about 250 lines (issue #24), opening with the two commands exactly (CI's first step runs the second
    verbatim), and one Python block of ten lines besides its imports: the "From Python" one that tests/test_python_api.py runs as written, so no
    block in the README goes unexecuted."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move the detail into docs/"
    assert lines[:6] == ["# trajopt", "", "```bash", *README_COMMANDS, "```"], lines[:6]
    blocks = [(m.start(), m.group(1)) for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]
    assert len(blocks) == 1, f"{len(blocks)} python blocks in README.md; only the one under '## From Python' is run"
    section = text.index("## From Python")
    assert section < blocks[0][0] < text.find("\n## ", section + 1), "the python block is not under '## From Python'"
    code = [line for line in blocks[0][1].splitlines() if line.strip() and not line.startswith("import ")]
    assert len(code) <= 10, f"the README's Python block is {len(code)} lines besides its imports (issue #24: ten)"


def nav_pages(config: str) -> list[str]:
    """The .md files that mkdocs.yml's nav names (its lines `- Title: page.md` or `- page.md` under `nav:`)."""
    nav = config.split("\nnav:", 1)[1]
    return re.findall(r"^\s*-\s+(?:[^\n]*?:\s+)?\"?([\w./-]+\.md)\"?\s*$", nav, re.M)


def test_the_site_nav_holds_every_page_and_only_pages_that_exist():
    """`mkdocs build --strict` fails on a page left out of the nav and on a nav entry with no page; this says which,
    in the default run, where mkdocs is not installed. Also: every file a page includes (`--8<-- "PATH"`) and every
    module the API reference documents (`::: trajopt.x`) exists."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    named = nav_pages(config)
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert len(named) == len(set(named)), f"named twice in the nav: {sorted(n for n in named if named.count(n) > 1)}"
    assert not set(named) - set(pages), f"in mkdocs.yml's nav but not in docs/: {sorted(set(named) - set(pages))}"
    assert not set(pages) - set(named), f"in docs/ but not in mkdocs.yml's nav: {sorted(set(pages) - set(named))}"
    for page in (ROOT / "docs").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for included in re.findall(r'^--8<--\s+"([^"]+)"', text, re.M):
            assert (ROOT / included).is_file(), f"docs/{page.name}: includes {included}: no such file"
        for module in re.findall(r"^:::\s+([\w.]+)", text, re.M):
            path = ROOT.joinpath(*module.split("."))
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), \
                f"docs/{page.name}: ::: {module}: no such module"


def test_the_nav_reader_reads_titles_quotes_and_sections():
    config = "site_name: x\nnav:\n  - Home: index.md\n  - Part:\n      - \"A: b\": a.md\n      - b.md\n  - Out: https://x.org\n"
    assert nav_pages(config) == ["index.md", "a.md", "b.md"]


def _figure_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("regenerate_figures", ROOT / "scripts" / "regenerate_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclass looks its module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_every_figure_in_the_docs_is_made_by_the_figure_script():
    """Figures are regenerated by scripts/regenerate_figures.py, not by hand: every PNG under docs/figures/ is the
    output of one of its commands, and each command is statically valid (a trajopt verb, options the verb takes,
    input files that exist: read from the CLI itself, no JAX)."""
    script = _figure_script()
    figures = {p.relative_to(ROOT / "docs" / "figures").as_posix() for p in (ROOT / "docs" / "figures").rglob("*.png")}
    orphans = sorted(figures - script.made_figures())
    assert not orphans, f"figures under docs/figures/ that no command of scripts/regenerate_figures.py makes: {orphans}"
    assert not script.static_problems(), script.static_problems()


def test_the_figure_script_finds_a_wrong_option_a_missing_file_and_a_duplicate():
    script = _figure_script()
    bad = (script.Figure("a", "a.png", "trajopt compare problems/nope.toml --x rollouts --xx 1 --out {out}", "x", ""),
           script.Figure("b", "a.png", "trajopt nonesuch problems/pushing_stiff.toml --out {out}", "x", ""),
           script.Figure("c", "c.png", "trajopt diagnose problems/pushing_stiff.toml", "x", ""))
    assert script.static_problems(bad) == [
        "a: problems/nope.toml: no such file", "a: trajopt compare: no option '--xx'",
        "b: name or target 'a.png' given twice", "b: 'trajopt nonesuch': not a trajopt verb",
        "c: the command does not write into {out} (--out {out})"]


@pytest.mark.slow  # about a minute: trajopt validate or study --dry-run per command (CI's slow job)
def test_every_figure_command_passes_trajopt_s_own_checks():
    """Each figure command checked by trajopt without computing: the problem with the command's variants and seeds
    validates, each study file dry-runs (examples/studies/stiffness_grid.toml and oracle_or_optimiser.toml), the
    paper script parses."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "regenerate_figures.py"), "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_example_script_is_run_by_a_test():
    """Each script under examples/ (*.py, *.sh; not the packages' __init__.py) is named by a test file that runs it:
    examples/python_api.py and the README block (tests/test_python_api.py, default run), pushing_basins.py (the same
    file, slow), reproduce_paper.sh (tests/test_studies.py, slow), user_system/cart.py (its problem file's tests)."""
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py")
    scripts = [p for p in (ROOT / "examples").rglob("*") if p.suffix in (".py", ".sh") and p.name != "__init__.py"]
    assert scripts
    unrun = [p.relative_to(ROOT).as_posix() for p in scripts
             if p.relative_to(ROOT / "examples").as_posix() not in tests and p.name not in tests]
    assert not unrun, f"example scripts that no test names (and runs): {unrun}"


def test_the_site_shows_a_link_to_a_repository_file_as_its_path(tmp_path):
    """scripts/mkdocs_hooks.py: a page's link out of docs/ to a file that exists becomes the file's path in code;
    a link inside docs/, a URL, a link in a code block and a link to a missing file are left as they are (so the
    strict build still fails on the missing one)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "x.toml").write_text("")
    page = "\n".join([
        "[examples/x.toml](../examples/x.toml) and [the grid](../examples/x.toml#top)",
        "[b](b.md) [gone](../examples/y.toml) [web](https://x.org/a.md) ![img](../examples/x.toml)",
        "```", "[in code](../examples/x.toml)", "```"])
    out = hooks.rewrite(page, tmp_path / "docs", tmp_path / "docs", tmp_path)
    assert out.splitlines() == [
        "`examples/x.toml` and the grid (`examples/x.toml`)",
        "[b](b.md) [gone](../examples/y.toml) [web](https://x.org/a.md) ![img](../examples/x.toml)",
        "```", "[in code](../examples/x.toml)", "```"]


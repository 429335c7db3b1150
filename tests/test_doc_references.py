"""Every file path named in the docs and in code comments/docstrings exists in the repository.

A reader who follows `see docs/agent.md` or `tools/data/pii.py` must find the file; paths outside
the repository (`../...`, absolute machine paths) are never named, since a user's clone lacks them.
Scanned: every tracked *.md file, and the comments and docstrings of every tracked *.py file.
A path counts when it starts at a top-level folder of the repository (tools/, docs/, ...), is a
bare all-caps *.md name (README.md), or leaves the repository (../x, a machine's absolute path). A
component in capitals (prompts/NAME.j2) is a placeholder and matches any name. Files a command
writes at run time (scores.md, shop.duckdb, ~/.shopsight/...) are not checked.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = "py|md|jsonl|json|yaml|yml|j2|jinja|csv|txt|toml|cfg|sh"
PATH_RE = re.compile(rf"(?<![\w./~$@-])((?:\.\./)*[\w.-]*(?:/[\w.*-]+)*\.(?:{EXTENSIONS}))(?![\w/-])")
BARE_DOC_RE = re.compile(r"[A-Z][A-Z0-9_-]*\.md")
PLACEHOLDER_RE = re.compile(r"(?<![^/])[A-Z][A-Z_]*(?=\.)")  # prompts/NAME.j2 -> prompts/*.j2
OUTSIDE_RE = re.compile(r"(?<![\w.])(?:\.\./shared|/work/)[\w./-]*")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def top_level_names() -> set[str]:
    return {p.relative_to(ROOT).parts[0] for p in tracked_files()}


def python_prose(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring in a Python source."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found.append((tok.start[0], tok.string))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                start = node.body[0].lineno
                found.extend((start + i, line) for i, line in enumerate(doc.splitlines()))
    return sorted(found)


def prose_of(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return python_prose(text)
    return list(enumerate(text.splitlines(), start=1))


def dangling_references() -> list[str]:
    """'file:line: path' for every path named in prose that does not exist."""
    tops = top_level_names()
    problems = []
    for path in tracked_files():
        if path.suffix not in (".py", ".md") or path.is_relative_to(ROOT / "tests" / "fixtures"):
            continue
        where = path.relative_to(ROOT)
        for line_no, line in prose_of(path):
            for outside in OUTSIDE_RE.findall(line):
                problems.append(f"{where}:{line_no}: {outside} (outside the repository)")
            for ref in PATH_RE.findall(line):
                ref = ref.rstrip(".")
                first = ref.split("/")[0]
                if ref.startswith("../"):
                    if OUTSIDE_RE.search(ref) is None and not (path.parent / ref).resolve().is_relative_to(ROOT):
                        problems.append(f"{where}:{line_no}: {ref} (outside the repository)")
                    continue
                if not (first in tops or BARE_DOC_RE.fullmatch(ref)):
                    continue  # a run-time file (scores.md, shop.duckdb) or a name in a sentence
                if not _exists(ref, path):
                    problems.append(f"{where}:{line_no}: {ref}")
    return problems


def _exists(ref: str, named_in: Path) -> bool:
    if "/" in ref:
        ref = PLACEHOLDER_RE.sub("*", ref)
    for base in (ROOT, named_in.parent):
        if "*" in ref:
            if any(base.glob(ref)):
                return True
        elif (base / ref).exists():
            return True
    if "/" not in ref:  # a bare name (README.md) may live in any folder
        return any(p.name == ref for p in tracked_files())
    return False


def test_every_named_path_exists():
    problems = dangling_references()
    assert not problems, f"{len(problems)} dangling references:\n" + "\n".join(problems)


def test_the_scanner_finds_a_dangling_path(tmp_path):
    source = '"""Doc: see docs/models.md and tools/data/pii.py."""\n# see ../shared/STYLE.md\nx = 1\n'
    prose = [text for _, text in python_prose(source)]
    refs = [r for text in prose for r in PATH_RE.findall(text)]
    assert sorted(refs) == ["../shared/STYLE.md", "docs/models.md", "tools/data/pii.py"]
    assert _exists("prompts/NAME.j2", ROOT / "README.md") and not _exists("docs/nothing.md", ROOT / "README.md")
    assert OUTSIDE_RE.findall("copied from ../shared/MODELS.md") == ["../shared/MODELS.md"]

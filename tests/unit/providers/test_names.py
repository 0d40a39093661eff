"""No provider's name in code outside ``providers/``: the rest knows providers only through
the ``ProviderSpec`` interface.

Identifiers and string literals are checked; comments and docstrings may name a provider
(they explain), and migrations are history. A name counts as a word or a word part separated by
``_``, ``-``, ``/`` or ``.`` (``mistral_api_key``, ``/anthropic``, ``gcp.gemini``).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from passgate.providers.registry import BUILTIN

SRC = Path(__file__).resolve().parents[3] / "src" / "passgate"
ALLOWED = (SRC / "providers", SRC / "storage" / "migrations")
# the providers served today or planned, whether or not registered yet
NAMES = sorted(
    {spec.name for spec in BUILTIN} | {"mistral", "openai", "anthropic", "gemini", "cohere", "vllm"}
)
WORD = re.compile(r"(?<![a-z0-9])(" + "|".join(NAMES) + r")(?![a-z0-9])", re.IGNORECASE)


def docstring_lines(source: str) -> set[int]:
    """The lines of every docstring (module, class, function)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def mentions(path: Path, root: Path = SRC) -> list[str]:
    """``file:line: token`` for each token of code naming a provider."""
    source = path.read_text(encoding="utf-8")
    skip = docstring_lines(source)
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.NAME, tokenize.STRING):
            continue
        if token.start[0] in skip:
            continue
        if WORD.search(token.string):
            found.append(f"{path.relative_to(root)}:{token.start[0]}: {token.string[:60]}")
    return found


def test_no_provider_is_named_outside_its_module() -> None:
    files = [
        path
        for path in SRC.rglob("*.py")
        if not any(path.is_relative_to(allowed) for allowed in ALLOWED)
    ]
    found = [line for path in sorted(files) for line in mentions(path)]
    assert not found, "provider names outside providers/:\n" + "\n".join(found)


def test_the_check_finds_a_name_in_code_and_not_in_prose(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Routes /mistral calls."""\n'
        "# a comment about Anthropic\n"
        'PREFIX = b"/anthropic"\n'
        "mistral_api_key = None\n"
        'SDK = "mistralai"\n'
    )
    found = [line.split(": ", 1)[1] for line in mentions(sample, tmp_path)]
    assert found == ['b"/anthropic"', "mistral_api_key"]

"""The package's layout, kept by the suite: stages apart from the library, no import cycle, no
module over 600 lines, no function over 80 (a numba kernel may be longer when a comment above it
says why), no block of 6 or more lines written twice (identical, or of the same shape with
other names, strings and numbers), and an errors module without torch."""

from __future__ import annotations

import ast
import keyword
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "nnboundary"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
REPEATED_LINES = 6
#: A block of the same shape in more places than this is a pattern (a table of constants, the
#: entries of a mapping), not a copy.
PATTERN_PLACES = 8
#: ... and so is a block of fewer distinct line shapes than this (a line over and over), or one
#: whose lines are mostly this thin (in tokens: ``name: type``).
DISTINCT_SHAPES = 3
THIN_TOKENS = 4
#: The phrase a comment above a longer numba kernel must hold.
LONG_KERNEL = "longer than 80 lines"


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in it (functions too): for
    ``from P import x`` the module ``P.x`` where it is one, else ``P``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    found.add(f"{source}.{alias.name}")
                elif source in known:
                    found.add(source)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stages_stand_apart_from_the_library():
    """A stage imports library modules only; no library module imports a stage or the CLI;
    every rule file's shell command names a stage that exists."""
    graph = import_graph()
    stages = {name for name in graph if name.startswith("nnboundary.stages.")}
    for name, targets in graph.items():
        if name in ("nnboundary.cli", "nnboundary.__main__"):
            continue  # the command line runs the stages (by name: importlib)
        wrong = {t for t in targets if t in stages or t == "nnboundary.cli"}
        assert not wrong, f"{name} imports {sorted(wrong)}"
    called = set()
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        called |= set(re.findall(r"python -m nnboundary (\w+)", rule_file.read_text()))
    assert called and {f"nnboundary.stages.{stage}" for stage in called} <= stages


def test_modules_and_functions_are_short():
    too_long = []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            if length <= MAX_FUNCTION_LINES:
                continue
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            above = "\n".join(lines[max(0, first - 6):first - 1]).lower()
            kernel = any("jit" in ast.unparse(d) for d in node.decorator_list)
            if not (kernel and LONG_KERNEL in above):
                too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


_SKIP = re.compile(r"^(?:[)\]}:,(\[{]+|import\s.*|from\s+\S+\s+import\s.*)$")
_STRING = re.compile(r"""[rbfuRBFU]{0,2}("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_NUMBER = re.compile(r"\b\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?\b")
_NAME = re.compile(r"\b[^\W\d]\w*\b")
_TOKEN = re.compile(r"\w+|[^\s\w]")


def _shape(line: str) -> str:
    """A line with its strings, numbers and names (keywords kept) each replaced by one symbol,
    its comment dropped and white space folded."""
    line = _STRING.sub(" § ", line)
    line = line.split("#", 1)[0]
    line = _NUMBER.sub(" ¤ ", line)
    line = _NAME.sub(lambda m: m.group(0) if keyword.iskeyword(m.group(0)) else "N", line)
    return " ".join(line.split())


def _shapes(text: str) -> list[tuple[int, str]]:
    """(line number, shape) of every line that counts (:func:`_shape`; text lines of a
    docstring count as they are written); blank lines, comments, lone punctuation and import
    lines are passed over."""
    kept = []
    for row, raw in enumerate(text.splitlines(), start=1):
        raw = raw.strip()
        if not raw or raw.startswith("#") or _SKIP.match(raw):
            continue
        shape = _shape(raw)
        if shape and not _SKIP.match(shape.replace(" ", "")):
            kept.append((row, shape))
    return kept


def _thin(window: tuple[str, ...]) -> bool:
    """Whether half the lines or more are thin (at most :data:`THIN_TOKENS` tokens, as
    ``name: type`` or ``class Name:``; a string counts as text): declarations, not logic."""
    thin = sum(len(_TOKEN.findall(shape)) <= THIN_TOKENS and shape != "§" for shape in window)
    return 2 * thin >= len(window)


def repeated_blocks(files: dict[str, str], size: int = REPEATED_LINES) -> list[str]:
    """Every pair of places that share ``size`` or more consecutive counted lines of the same
    shape (:func:`_shapes`), once per pair of files and lines; a block found in more than
    :data:`PATTERN_PLACES` places, or of few or thin lines (:func:`_thin`), is a pattern, not
    a copy."""
    seen: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for name, text in files.items():
        shapes = _shapes(text)
        for start in range(len(shapes) - size + 1):
            window = tuple(shape for _, shape in shapes[start:start + size])
            if len(set(window)) < DISTINCT_SHAPES or _thin(window):
                continue
            seen[window].append((name, shapes[start][0]))
    found = set()
    for places in seen.values():
        if len(places) > PATTERN_PLACES:
            continue
        for i, (a, line_a) in enumerate(places):
            for b, line_b in places[i + 1:]:
                if a == b and abs(line_a - line_b) < size:
                    continue  # one block overlapping itself
                found.add(f"{a}:{line_a} ~ {b}:{line_b}")
    return sorted(found)


def test_no_block_is_written_twice():
    files = {str(path.relative_to(REPO)): path.read_text() for path in modules().values()}
    assert repeated_blocks(files) == []


def test_the_repeat_finder_sees_a_renamed_copy():
    block = "\n".join([
        "def total(values, weights):", "    scale = float(weights.sum())",
        "    if scale <= 0:", "        raise ValueError('no weight')",
        "    mean = (values * weights).sum() / scale", "    return mean, values.max() - mean",
        "print(total)"])
    renamed = block.replace("values", "xs").replace("'no weight'", "'empty'").replace("0", "1")
    assert repeated_blocks({"a.py": block, "b.py": renamed}) == ["a.py:1 ~ b.py:1",
                                                                 "a.py:2 ~ b.py:2"]
    cut = "\n".join(block.splitlines()[:5])
    assert repeated_blocks({"a.py": block, "b.py": cut}) == []
    table = "\n".join(f"NAME_{i} = {i}" for i in range(8))  # one shape over and over
    assert repeated_blocks({"a.py": table, "b.py": table}) == []


def test_the_errors_module_needs_no_torch():
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    script = "import sys, nnboundary.errors, nnboundary.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True,
                   env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})

"""The package's layout: imports run one way (no cycles among src/tts_otel modules).

How large a function may grow is ruff's to say (mccabe complexity, branches, statements:
pyproject.toml), not a line count that shapes files to fit it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "tts_otel"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports when it is imported: module-level
    statements only (``if TYPE_CHECKING:`` blocks and imports inside functions
    run later, or never)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports the submodule; `from mod import name` the module.
                found.update(f"{base}.{alias.name}" for alias in node.names)
                found.add(base)
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(node, block, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    submodules = {m for m in found if m in modules and m != name}
    # `from tts_otel import semconv` names a submodule: the package itself is not
    # what is needed then, unless something is imported from its __init__.
    return {m for m in submodules if not any(o.startswith(m + ".") for o in submodules)}


def test_no_import_cycles_among_the_packages_modules() -> None:
    assert PACKAGE.is_dir(), PACKAGE  # else both tests would walk nothing and pass
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    cycles: list[list[str]] = []

    def walk(name: str, trail: list[str], done: set[str]) -> None:
        for target in sorted(graph[name]):
            if target in trail:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in done:
                walk(target, [*trail, target], done)
        done.add(name)

    finished: set[str] = set()
    for name in sorted(graph):
        walk(name, [name], finished)
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_formatter_formats_every_line() -> None:
    """No line is shaped by hand against ruff format: the formatter's layout is the layout."""
    root = PACKAGE.parent.parent
    marked = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("src", "tests", "benchmarks", "examples", "dashboards", "deploy", "scripts")
        for path in (root / folder).rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "# fmt: " + "skip" in line or "# fmt: " + "off" in line
    ]
    assert marked == []

"""The package layout rules of the stage-package redesign, checked on the source tree.

At most six loose modules in ``src/subct``, no source file over 450 lines, no import
cycle (module-level imports, package ``__init__`` included), one SimpleITK bridge, one
largest-component helper, a test folder per stage package, every lazy import explained,
and the pre-redesign module names still importable.
"""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "subct"
TESTS = Path(__file__).resolve().parent
STAGE_PACKAGES = ("image", "io", "labels", "transfer", "dataset", "synth", "model",
                  "training", "inference", "evaluation", "qc", "cli")


def _modules() -> dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _top_level_imports(path: Path) -> set[str]:
    """subct modules imported when ``path`` is imported (not lazily, not for typing)."""
    imported: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("subct"):
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.startswith("subct"))
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                if isinstance(node, ast.Try):
                    visit(node.finalbody)
                    for handler in node.handlers:
                        visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return imported


def test_at_most_six_loose_modules() -> None:
    loose = sorted(path.name for path in SOURCE.glob("*.py"))
    assert len(loose) <= 6, loose


def test_no_source_file_over_450_lines() -> None:
    long = {str(p.relative_to(SOURCE)): n for p in SOURCE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long


def _fail_on_cycle(graph: dict[str, set[str]]) -> None:
    """Fail naming the first import cycle of ``graph`` (module → modules it imports)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_no_import_cycles() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for target in _top_level_imports(path):
            parts = target.split(".")
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            edges.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[name] = {t for t in edges if t in modules and t != name}
    _fail_on_cycle(graph)


def _calls(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*.py")
                  if pattern in p.read_text(encoding="utf-8"))


def test_one_simpleitk_bridge() -> None:
    for call in ("GetImageFromArray", "GetArrayFromImage", "SetDirection("):
        assert _calls(call) == ["image/sitk_bridge.py"], call


def test_one_largest_component_helper() -> None:
    assert _calls("ndimage.label(") == ["image/masks.py"]
    assert _calls("sitk.ConnectedComponent(") in ([], ["image/masks.py"])


def test_every_stage_package_has_its_tests() -> None:
    for package in STAGE_PACKAGES:
        assert (SOURCE / package / "__init__.py").is_file(), package
        assert list((TESTS / package).glob("test_*.py")), f"no tests/{package}/test_*.py"


def test_lazy_imports_say_why() -> None:
    """An import of subct inside a function carries a comment (or sits in the CLI, whose
    command modules import their API only when the command runs)."""
    unexplained = []
    for name, path in _modules().items():
        if name.startswith("subct.cli"):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if not (module or "").startswith("subct"):
                    continue
                above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
                explained = "#" in lines[node.lineno - 1] or above.startswith("#")
                if not explained and not _inside_type_checking(tree, node):
                    unexplained.append(f"{name}:{node.lineno}")
    assert not unexplained


def _inside_type_checking(tree: ast.Module, target: ast.AST) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and any(
                child is target for child in ast.walk(node)):
            return True
    return False


@pytest.mark.parametrize(("old", "new"), [("subct.resample", "subct.image.resample"),
                                          ("subct.metrics", "subct.evaluation.metrics"),
                                          ("subct.models", "subct.model.registry")])
def test_moved_modules_still_import(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
               for w in caught)
    target = importlib.import_module(new)
    public = [n for n in vars(target) if not n.startswith("_") and callable(getattr(target, n))]
    assert public and all(getattr(module, n) is getattr(target, n) for n in public)


def test_readme_python_names_resolve() -> None:
    from subct.evaluation import EvaluationConfig, evaluate_paths, write_long_csv
    from subct.io import load_volume, save_volume
    from subct.synth import SynthConfig, SyntheticDataset, SynthGenerator
    from subct.training.config import load_training_config
    from subct.training.loop import train

    assert all(callable(x) for x in (EvaluationConfig, evaluate_paths, write_long_csv,
                                     load_volume, save_volume, SynthConfig, SynthGenerator,
                                     SyntheticDataset, load_training_config, train))
    import subct

    assert callable(subct.segment)


def _functions() -> list[tuple[str, str, int]]:
    """(file, function, length in lines) of every function in the package."""
    found = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                found.append((str(path.relative_to(SOURCE)), node.name,
                              node.end_lineno - node.lineno + 1))
    return found


def test_no_function_over_80_lines_and_segment_volume_a_short_loop() -> None:
    functions = _functions()
    long = [(file, name, length) for file, name, length in functions if length > 80]
    assert not long
    lengths = {(file, name): length for file, name, length in functions}
    assert lengths[("inference/pipeline.py", "segment_volume")] <= 40


def _all_imports(path: Path) -> set[str]:
    """subct modules ``path`` imports anywhere (functions included), not for typing."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(inner) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for inner in ast.walk(node)}
    imported: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("subct"):
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names if a.name.startswith("subct"))
    return imported


def test_no_import_cycles_counting_function_level_imports() -> None:
    """Module to module (package ``__init__``s, which only re-export lazily, left out)."""
    modules = {name: path for name, path in _modules().items() if path.name != "__init__.py"}
    graph = {name: {t for t in _all_imports(path) if t in modules and t != name}
             for name, path in modules.items()}
    _fail_on_cycle(graph)


def test_every_qc_check_is_registered() -> None:
    from subct.qc import case_checks
    from subct.qc.registry import QC_CHECKS

    defined = {name for name, value in vars(case_checks).items()
               if callable(value) and getattr(value, "__module__", "") == case_checks.__name__
               and not name.startswith("_")}
    assert defined == {check.__name__ for check in QC_CHECKS}  # type: ignore[attr-defined]


def test_hu_window_and_spacing_defaults_are_written_once() -> None:
    for literal in ("-100.0, 200.0", "(1.0, 1.0, 1.0)"):
        assert _calls(literal) == ["model/plan.py"], literal


def test_package_inits_share_one_lazy_export_helper() -> None:
    for path in SOURCE.glob("*/__init__.py"):
        if path.parent.name == "lazy":  # the helper itself
            continue
        text = path.read_text(encoding="utf-8")
        assert "def __getattr__" not in text, path  # the helper, not a copy of it
        if "_EXPORTS" in text:
            assert "lazy_exports(__name__, _EXPORTS)" in text, path

"""The package's shape: layers that import only downwards, no import circles, a wheel that holds it all."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), TYPE_CHECKING imports included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_is_part_of_an_import_circle():
    graph = grimp.build_graph("tased_batch", exclude_type_checking_imports=False)
    # a package's __init__ re-exporting its own submodules is not a circle between layers
    for package in (
        "tased_batch",
        "tased_batch.decode",
        "tased_batch.stores",
        "tased_batch.engine",
        "tased_batch.model",
    ):
        for child in graph.find_children(package):
            for edge in (package, child), (child, package):
                if graph.direct_import_exists(importer=edge[0], imported=edge[1]):
                    graph.remove_import(importer=edge[0], imported=edge[1])
    assert _cycles(graph) == []


def test_the_layers_import_only_downwards():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tased_batch layers KEPT" in result.stdout


def test_the_library_never_imports_the_cli():
    graph = grimp.build_graph("tased_batch")
    assert not [
        m for m in graph.modules if any("tased_batch.cli" in i for i in graph.find_modules_directly_imported_by(m))
    ]
    offenders = [p for p in (ROOT / "tased_batch").rglob("*.py") if "tased_batch.cli" in p.read_text()]
    assert offenders == []


@pytest.mark.timeout(300)
def test_the_wheel_holds_every_package_and_data_file(tmp_path):
    """`pip wheel .` as a user builds it (from a clean copy: no old build/ folder): every module of the
    source tree, the CLI as tased_batch.cli, py.typed."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".ci-*", "build", "*.egg-info", "__pycache__"))
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = out.glob("tased_batch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tased_batch").rglob("*.py")}
    expected |= {"tased_batch/cli/" + p.relative_to(ROOT / "cli").as_posix() for p in (ROOT / "cli").rglob("*.py")}
    expected.add("tased_batch/py.typed")
    assert expected - names == set()
    assert {n for n in names if n.endswith(".py")} - expected == set()  # nothing stale from an old build/ folder

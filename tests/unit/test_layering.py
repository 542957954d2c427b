"""The layers (issue #13, DESIGN.md §3): arrows point down only.

- the kernel (every module of `minqing` outside `minqing/shell/`) imports neither a service nor the
  shell, and names no service module in a string either (an `importlib` path is an import too);
- a service imports the kernel and itself, never another service, never the shell;
- the shell (`minqing/shell/`) may import anything; so may the console, a front end over HTTP like
  the gateway (it reads the gateway's route table).

Read from the source with `ast`, so imports inside functions count too.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAMES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
MAX_LINES = 450      # "under ~400 lines": a module a little over is not worth a split
# The console is a front end over HTTP, as the gateway is: it finds which service answers a path in the
# gateway's route table (minqing.shell.gateway), so it may import the shell.
FRONT_ENDS = {"console"}


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[str]:
    """Every module path the file imports, and every string that names a module of `services`."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(r"^services\.\w", node.value):
            names.append(node.value)
    return names


def _is_kernel(path: Path) -> bool:
    return (ROOT / "minqing" / "shell") not in path.parents


KERNEL = [p for p in _modules(ROOT / "minqing") if _is_kernel(p)]
SERVICE_MODULES = _modules(ROOT / "services")


@pytest.mark.parametrize("path", KERNEL, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_kernel_imports_no_service_and_not_the_shell(path):
    bad = [n for n in _imports(path) if n == "services" or n.startswith(("services.", "minqing.shell"))]
    assert bad == [], f"{path.relative_to(ROOT)} reaches up into {bad}"


@pytest.mark.parametrize("path", [p for p in SERVICE_MODULES if p.relative_to(ROOT / "services").parts[0] not in FRONT_ENDS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_a_service_imports_neither_another_service_nor_the_shell(path):
    own = path.relative_to(ROOT / "services").parts[0]
    others = tuple(f"services.{name}" for name in SERVICE_NAMES if name != own)
    bad = [n for n in _imports(path) if n.startswith("minqing.shell") or n == "minqing.shell"
           or any(n == o or n.startswith(o + ".") for o in others)]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


def test_the_layering_test_sees_an_upward_import(tmp_path):
    """The checks above can fail: an import inside a function, and a module path in a string, are seen."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from services.routing import actions\n\nX = 'services.notify.rules:NotificationRules'\n")
    assert _imports(probe) == ["services.routing", "services.routing.actions", "services.notify.rules:NotificationRules"]


def test_modules_are_small_or_say_why():
    """Modules under ~400 lines, unless the module says at its top why it is longer ("Long because …")."""
    long = []
    for path in _modules(ROOT / "minqing") + SERVICE_MODULES:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES and "Long because" not in text[:3000]:
            long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert long == [], "split these, or say at the top why they are long: " + ", ".join(long)

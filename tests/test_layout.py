"""The package's shape: layers that import only downwards, no import cycles (function-local imports counted),
`import tfchar` without TensorFlow, and a README Layout section that lists every module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tfchar"

# Each module's layer: a module may import modules of its own layer or below, never above.
LAYERS = {"core": 0, "ops": 1, "nn": 2, "runtimes": 3,
          "data": 4, "training": 4, "evaluation": 4, "sampling": 4, "exporting": 4, "tuning": 4, "studies": 4,
          "webdemo": 4}
TOP = 5  # tfchar/__init__.py (the API), __main__.py, cli.py and the verbs (python -m tfchar.<verb>)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def imports(path: Path, known, root: Path = ROOT) -> set[str]:
    """Every tfchar module (a name in `known`) that `path` imports, at module level or inside a function."""
    out = set()
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # tfchar.nn.models.build_model -> tfchar.nn.models
                name = name.rpartition(".")[0]
            if name.startswith("tfchar") and name != this:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def test_every_import_points_down_the_layers():
    wrong = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
             for a, deps in graph().items() for b in deps if layer(b) > layer(a) and b != "tfchar"]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_counting_function_local_imports():
    g = graph()
    g = {a: {b for b in deps if b != "tfchar"} for a, deps in g.items()}  # the package itself: the lazy API
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(g[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_import_check_sees_function_local_imports(tmp_path):
    """The checks above would miss a hidden cycle if `imports` only read module-level statements."""
    mod = tmp_path / "tfchar" / "x.py"
    mod.parent.mkdir()
    mod.write_text("def f():\n    from tfchar.training import trainer\n    import tfchar.ops.rng\n")
    known = {"tfchar.training.trainer", "tfchar.ops.rng", "tfchar.x"}
    assert imports(mod, known, root=tmp_path) == {"tfchar.training.trainer", "tfchar.ops.rng"}


def test_importing_tfchar_and_the_cli_does_not_import_tensorflow():
    code = ("import sys, tfchar, tfchar.cli, tfchar.core.config, tfchar.fit, tfchar.sample, tfchar.demo; "
            "print('tensorflow' in sys.modules, tfchar.TfcharError.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "TfcharError"]


def layout_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\s*(tfchar/\S+\.(?:py|cc))\s+\S", section, flags=re.M)


def test_readme_layout_lists_every_module_once():
    listed = layout_lines()
    assert len(listed) == len(set(listed)), "listed twice: " + ", ".join({p for p in listed if listed.count(p) > 1})
    actual = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*") if p.suffix in (".py", ".cc")
              and "__pycache__" not in p.parts}
    assert set(listed) == actual, (f"missing from README Layout: {sorted(actual - set(listed))}; "
                                   f"listed but absent: {sorted(set(listed) - actual)}")

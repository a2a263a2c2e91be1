"""The architecture as a test: layers import one way, and nobody imports another module's private names.

    prior_rl/llm  →  prior_rl/prior  →  prior_rl/bridge  →  RL core (losses, networks, replay, parallel, agents)
                                                          →  prior_rl/run, prior_rl/io  →  cli

A static check over the source (imports inside functions count too): ``llm`` imports nothing else from prior_rl
or envs; ``prior`` only ``llm`` and the observation type (``envs.base``); the RL core no text code at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "prior_rl"
CORE = ("prior_rl.losses", "prior_rl.networks", "prior_rl.replay", "prior_rl.parallel", "prior_rl.agents")

# layer -> what it may import from this repository (prefixes)
ALLOWED = {
    "prior_rl.llm": ("prior_rl.llm",),
    "prior_rl.prior": ("prior_rl.llm", "prior_rl.prior", "envs.base"),
    "prior_rl.bridge": ("prior_rl.llm", "prior_rl.prior", "prior_rl.bridge", "prior_rl.replay", "envs.base"),
    **{core: CORE for core in CORE},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) for every import in the file, absolute or relative."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = me.split(".")[: -node.level + (1 if path.name == "__init__.py" else 0) or None]
                module = ".".join(base + ([module] if module else []))
            # "from prior_rl import losses" imports the module prior_rl.losses: check that, not the package
            submodules = [a.name for a in node.names if _is_module(f"{module}.{a.name}")]
            out += [(f"{module}.{name}", [], node.lineno) for name in submodules]
            rest = [a.name for a in node.names if a.name not in submodules]
            if rest or not submodules:
                out.append((module, rest, node.lineno))
    return out


def _ours(module: str) -> bool:
    return module.split(".")[0] in ("prior_rl", "envs", "experiments", "benchmarks")


def _layer(name: str) -> str | None:
    return next((layer for layer in ALLOWED if name == layer or name.startswith(layer + ".")), None)


SOURCES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_import_nothing_from_above(path):
    layer = _layer(_module_name(path))
    if layer is None:
        return
    bad = [
        f"line {line}: {module}"
        for module, _, line in _imports(path)
        if _ours(module) and not module.startswith(ALLOWED[layer])
    ]
    assert not bad, f"{path.relative_to(ROOT)} ({layer}) imports from a layer above it: {bad}"


ALL_SOURCES = sorted(
    p for d in ("prior_rl", "envs", "experiments", "benchmarks", "tests") for p in (ROOT / d).rglob("*.py")
)


@pytest.mark.parametrize("path", ALL_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_modules_private_names(path):
    me = _module_name(path)
    bad = []
    for module, names, line in _imports(path):
        if not _ours(module) or module == me:
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private or any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
            bad.append(f"line {line}: from {module} import {', '.join(names)}")
    assert not bad, f"{path.relative_to(ROOT)} imports private names: {bad}"


def test_the_check_sees_a_violation(tmp_path):
    """The checker itself: an upward import in llm/ would be reported."""
    fake = PKG / "llm" / "__init__.py"
    imports = _imports(fake)
    assert all(not m.startswith("prior_rl.run") for m, _, _ in imports)
    assert _layer("prior_rl.llm.llama") == "prior_rl.llm" and _layer("prior_rl.run.acting") is None
    assert not "prior_rl.run".startswith(ALLOWED["prior_rl.llm"])


def test_run_functions_stay_short():
    """Loops are composed of small named steps: no function in prior_rl/run over 60 lines."""
    long = []
    for path in sorted((PKG / "run").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long

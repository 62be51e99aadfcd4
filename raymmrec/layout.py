"""Which stage each module belongs to, and the import rule: a stage imports shared modules, never another stage.

Stages talk only through their on-disk outputs (dataset dir, encoder dir, feature set, checkpoint); the
pipeline is the one module that calls every stage. tests/test_import_direction.py enforces the rule and
bench/stage_imports.py prints the stage-to-stage import graph.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = "raymmrec"
# module prefix → stage; the longest matching prefix wins; what matches none is shared
STAGE_OF_PREFIX = {
    "raymmrec.data": "1-prepare",
    "raymmrec.pretrain": "2-pretrain",
    "raymmrec.features": "3-features",
    "raymmrec.recsys": "4-backbones",
    "raymmrec.tune": "4-backbones",
    "raymmrec.recommendations": "5-recommend",
    "raymmrec.pipeline": "pipeline",
    # shared inside a stage's folder: the on-disk formats every stage reads
    "raymmrec.data.schema": "shared",
}
ORCHESTRATOR = "pipeline"
SHARED = "shared"
# The few declared crossings: (importer prefix, imported prefix) → why it is reading an input, not using a stage.
ALLOWED: dict[tuple[str, str], str] = {
    ("raymmrec.default_dataset", "raymmrec.data.synth"):
        "the embedded default input of every job is stage 1's generated dataset",
    ("raymmrec.pretrain.pairs", "raymmrec.data.jsonlines"):
        "pre-training reads raw JSON-lines pair files with the raw-source record parser",
    ("raymmrec.recsys.reference_scorers", "raymmrec.data.synth_latents"):
        "the oracle reference scorer ranks by the generator's own choice model over stage 1's truth file",
    ("raymmrec.recommendations", "raymmrec.recsys"):
        "stage 5 rebuilds stage 4's trained model from its checkpoint (model code, data, masking)",
}


def stage_of(module: str) -> str:
    """The stage a dotted module name belongs to ('shared' for config, errors, formats, encoders, ...)."""
    best, stage = "", SHARED
    for prefix, name in STAGE_OF_PREFIX.items():
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best, stage = prefix, name
    return stage


def module_imports(root: Path) -> dict[str, set[str]]:
    """Every raymmrec module under `root` (the repo) → the raymmrec modules it imports (also inside functions)."""
    out: dict[str, set[str]] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                # `from raymmrec.x import y` may import submodule x.y: count it when that file exists
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    sub_path = root / Path(*sub.split("."))
                    found.add(sub if sub_path.with_suffix(".py").is_file() or sub_path.is_dir() else node.module)
        out[name] = found
    return out


def allowed(importer: str, target: str) -> bool:
    """Whether `importer` → `target` is one of the declared crossings."""
    under = lambda m, p: m == p or m.startswith(p + ".")  # noqa: E731
    return any(under(importer, a) and under(target, b) for a, b in ALLOWED)


def cross_stage_imports(root: Path) -> list[tuple[str, str]]:
    """(importer, imported) pairs that break the rule: a stage (or shared module) importing another stage."""
    bad = []
    for importer, targets in module_imports(root).items():
        src = stage_of(importer)
        if src == ORCHESTRATOR:
            continue
        for target in sorted(targets):
            dst = stage_of(target)
            if dst in (SHARED, src) or allowed(importer, target):
                continue
            bad.append((importer, target))
    return bad


def stage_graph(root: Path) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(stage, stage it imports) → the module pairs behind that edge, orchestrator and shared left out."""
    graph: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for importer, target in cross_stage_imports(root):
        graph[(stage_of(importer), stage_of(target))].append((importer, target))
    return dict(sorted(graph.items()))

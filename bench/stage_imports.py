"""Print the stage-to-stage import graph (each edge with the modules behind it): `python bench/stage_imports.py`."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymmrec.layout import ALLOWED, allowed, module_imports, stage_graph, stage_of  # noqa: E402


def main() -> None:
    modules = module_imports(ROOT)
    per_stage: dict[str, int] = {}
    for m in modules:
        per_stage[stage_of(m)] = per_stage.get(stage_of(m), 0) + 1
    print("modules per stage: " + ", ".join(f"{s} {n}" for s, n in sorted(per_stage.items())))
    graph = stage_graph(ROOT)
    print(f"stage-to-stage edges: {len(graph)}, module imports behind them: {sum(len(v) for v in graph.values())}")
    for (src, dst), pairs in graph.items():
        print(f"  {src} -> {dst} ({len(pairs)})")
        for importer, target in pairs:
            print(f"      {importer} -> {target}")
    declared = sorted((a, b) for a, targets in modules.items() for b in targets
                      if stage_of(a) != stage_of(b) and allowed(a, b))
    print(f"declared crossings (raymmrec.layout.ALLOWED, {len(ALLOWED)} rules): {len(declared)} module imports")
    for importer, target in declared:
        print(f"      {importer} -> {target}")


if __name__ == "__main__":
    main()

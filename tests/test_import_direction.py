"""The house rule: a stage imports shared modules, never another stage's code (raymmrec/layout.py)."""
from pathlib import Path

from raymmrec.layout import ALLOWED, cross_stage_imports, module_imports, stage_of

ROOT = Path(__file__).resolve().parents[1]


def test_no_stage_imports_another_stage():
    bad = cross_stage_imports(ROOT)
    assert not bad, "stage code importing another stage (move the shared part to a shared module, or declare " \
                    "the crossing in raymmrec.layout.ALLOWED with its reason):\n" + \
                    "\n".join(f"  {a} ({stage_of(a)}) -> {b} ({stage_of(b)})" for a, b in bad)


def test_the_checker_sees_a_planted_crossing(tmp_path):
    pkg = tmp_path / "raymmrec"
    for sub in ("features", "recsys"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "recsys" / "interaction_data.py").write_text("X = 1\n")
    # inside a function too: lazy imports count
    (pkg / "features" / "quality.py").write_text("def f():\n    from raymmrec.recsys.interaction_data import X\n")
    assert cross_stage_imports(tmp_path) == [("raymmrec.features.quality", "raymmrec.recsys.interaction_data")]
    assert module_imports(tmp_path)["raymmrec.features.quality"] == {"raymmrec.recsys.interaction_data"}


def test_every_declared_crossing_is_still_used():
    used = {(a, b) for a, targets in module_imports(ROOT).items() for b in targets}
    under = lambda m, p: m == p or m.startswith(p + ".")  # noqa: E731
    for a, b in ALLOWED:
        assert any(under(x, a) and under(y, b) for x, y in used), f"ALLOWED[{a} -> {b}] is no longer needed"

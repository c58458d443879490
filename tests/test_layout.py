import ast
from pathlib import Path

from conftest import ROOT


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_infer_never_imports_train():
    for path in (ROOT / "src" / "infer").rglob("*.py"):
        assert "train" not in imported_modules(path), f"{path} imports train: inference must need only the logged model"


def test_model_code_is_self_contained():
    """MLflow copies the newstag_model package alone into each model; it must not import the rest of the project."""
    files = sorted((ROOT / "src" / "newstag_model").glob("*.py"))
    assert len(files) > 5
    for path in files:
        assert not imported_modules(path) & {"train", "infer", "newstag"}, path

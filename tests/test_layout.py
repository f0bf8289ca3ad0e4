"""The package's shape: no import circles between modules, imports at the top of library
modules, and `detect --help` without torch (tests/test_cli_basics.py)."""

from __future__ import annotations

import ast
from pathlib import Path

DETECT = Path(__file__).resolve().parent.parent / "detect"

# Deferred on purpose, for the start-up of `detect evaluate` and `detect anchors` (which read
# data sets but decode no pixels, and a COCO JSON needs no reader at all): OpenCV's decode and
# the data set readers; and optional packages (a missing one falls back).
ALLOWED_DEFERRED = {
    ("detect.data.image", "cv2"),
    ("detect.data", "detect.data.voc"),
    ("detect.data", "detect.data.yolo"),
    ("detect.data", "detect.data.coco"),
    ("detect.metrics.predictions", "detect.data"),
    ("detect.metrics.predictions", "orjson"),
    ("detect.metrics.predictions", "msgspec"),
    ("detect.models.export", "onnx"),
    # the runtime of an exported model: only the one its format needs (openvino alone takes
    # ~0.5 s to import), and a missing one is a DetectError naming it
    ("detect.models.export", "openvino"),
    ("detect.runtime", "onnxruntime"),
    ("detect.runtime", "openvino"),
    # `detect predict --weights model.onnx` never imports torch (~2.7 s): run_predict loads the
    # PyTorch predictor only for PyTorch weights
    ("detect.inference.run", "detect.inference.predictor"),
    # `import detect` stays light: `detect.Detector` loads detect.api on first use; and the
    # Detector loads PyTorch only for what needs it (training, evaluating, exporting: an
    # exported model predicts without it); supervision is optional (Result.to_supervision)
    ("detect", "detect"),
    ("detect.api", "detect.engine"),
    ("detect.api", "detect.inference.dataset"),
    ("detect.api", "detect.models"),
    ("detect.api", "detect.models.export"),
    ("detect.api", "detect.models.weights_file"),
    ("detect.api", "supervision"),
}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in DETECT.rglob("*.py"):
        parts = path.relative_to(DETECT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def _imported(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """detect modules an import statement loads (a `from pkg import mod` names the module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    base = node.module or ""
    out = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return [m for m in out if m in known]


def test_no_import_circles():
    mods = _modules()
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, tree in mods.items():
        for node in ast.walk(tree):  # anywhere: a deferred import is still a dependency
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name].update(m for m in _imported(node, known) if m != name)
    # Tarjan's strongly connected components: a circle is a component of 2 or more modules
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            # a package importing its own submodules is not a circle
            if len(comp) > 1 and not all(c.startswith(min(comp, key=len)) for c in comp):
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_library_imports_are_at_the_top():
    deferred = []
    for name, tree in _modules().items():
        if name.startswith("detect.cli"):
            continue  # the CLI defers heavy imports so `detect --help` starts fast
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if (name, mod) not in ALLOWED_DEFERRED:
                        deferred.append(f"{name}: {mod}")
    assert deferred == []

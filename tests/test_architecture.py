"""Imports point one way: cli -> training/evaluation/plots -> checkpoint -> objectives -> models -> likelihoods."""

import ast
from pathlib import Path

import vaekit

PACKAGE = Path(vaekit.__file__).parent

# Layer of each module; a module may import only modules of a strictly lower layer; layer 0
# (`config`, `errors`, `randomness`) is open to all. Two refinements of STYLE.md's picture:
# `training` and `plots` use `evaluation` (the validation pass; latent diagnostics for the
# traversal order), and `data` sits beside `checkpoint`, below training and evaluation.
LAYERS = {
    "errors": 0, "config": 0, "randomness": 0,
    "likelihoods": 1,
    "models": 2,
    "objectives": 3,
    "checkpoint": 4, "data": 4, "distributed": 4,
    "evaluation": 5,
    "plots": 6, "training": 6,
    "report": 7,
    "playground": 8, "experiments": 8,
    "presets": 0, "cli": 9, "__main__": 10,
}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def test_no_arrow_points_up():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module == "vaekit.__init__":  # the public API re-exports from every layer
            continue
        top = rel.parts[1]
        own = _layer(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaekit"):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("vaekit")]
            for name in names:
                if name == "vaekit" or name.split(".")[1] == top:
                    continue
                if _layer(name) >= own and _layer(name) != 0:
                    problems.append(f"{module} imports {name}")
    assert not problems, problems


def test_models_never_touch_the_file_system():
    for path in (PACKAGE / "models").glob("*.py"):
        text = path.read_text()
        for forbidden in ("open(", "Path(", "safetensors", "torch.save", "torch.load"):
            assert forbidden not in text, (path.name, forbidden)

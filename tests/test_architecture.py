"""The shape of the package: imports point one way, and every function reads in one go.

cli -> experiments / playground -> compare -> report / tensorboard -> training / plots -> evaluation
-> diagnostics -> disentanglement -> rundir -> checkpoint / data / distributed -> objectives -> models
-> likelihoods / schedules / batch (ARCHITECTURE.md draws it)."""

import ast
from pathlib import Path

import vaekit

PACKAGE = Path(vaekit.__file__).parent

# Layer of each module; a module may import only modules of a strictly lower layer; layer 0
# (`config`, `errors`, `randomness`, `progress`, ...) is open to all. `rundir` owns the run folder's
# names and rules on top of `checkpoint`'s file formats; `evaluation` reads the latent space through
# `diagnostics` (which runs the `disentanglement` metrics over a model's codes); `training` and `plots`
# use both (the validation pass; the latent diagnostics for the traversal order); `compare` holds the
# run-against-run statistics that the experiments' summaries use.
LAYERS = {
    "errors": 0,
    "config": 0,
    "randomness": 0,
    "progress": 0,
    "callbacks": 0,
    "compiling": 0,
    "presets": 0,
    "likelihoods": 1,
    "schedules": 1,
    "batch": 1,
    "models": 2,
    "objectives": 3,
    "checkpoint": 4,
    "data": 4,
    "distributed": 4,
    "rundir": 5,
    "disentanglement": 6,
    "diagnostics": 7,
    "evaluation": 8,
    "plots": 9,
    "training": 9,
    "report": 10,
    "tensorboard": 10,
    "compare": 11,
    "playground": 12,
    "experiments": 12,
    "cli": 13,
    "__main__": 14,
}
MAX_FUNCTION_LINES = 60


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


def test_every_module_has_a_layer():
    modules = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert modules - {"__init__"} <= set(LAYERS), sorted(modules - set(LAYERS))


def test_no_function_is_longer_than_a_screen():
    """Counted from the `def` line (or its first decorator) to the last line of the body."""
    lengths = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                lengths.append((node.end_lineno - start + 1, f"{path.relative_to(PACKAGE)}:{node.name}"))
    too_long = [f"{where} has {n} lines" for n, where in lengths if n > MAX_FUNCTION_LINES]
    assert not too_long, too_long

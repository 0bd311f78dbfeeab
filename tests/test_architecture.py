"""The shape of the package: imports point one way, no class tests of priors or posteriors outside models/, and
every function reads in one go.

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
    "features": 6,
    "diagnostics": 7,
    "evaluation": 8,
    "plots": 9,
    "training": 9,
    "prior_training": 9,
    "report": 10,
    "tensorboard": 10,
    "compare": 11,
    "playground": 12,
    "experiments": 12,
    "cli": 13,
    "__main__": 14,
}
MAX_FUNCTION_LINES = 59  # under 60: each function reads in one go (without packing lines by hand)
# Where the prior and posterior classes live: no module outside models/ tests an object against them.
COMPONENT_FILES = ("priors.py", "posteriors.py", "hierarchy.py")


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package's own file as `vaekit.data.__init__`)."""
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(module: str, source: str) -> list[str]:
    """The modules of ours that `source` (the text of `module`) imports: `import vaekit.X`, `from vaekit.X
    import name`, and `from vaekit import X` or `from vaekit.pkg import X` read as the module vaekit.X or
    vaekit.pkg.X where X is one; relative imports resolved against `module`'s package."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "vaekit"]
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(module.split(".")[: -node.level] + [node.module or ""]).strip(".")
                if node.level
                else node.module
            )
            if base and base.split(".")[0] == "vaekit":
                names += [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
    return names


def upward_imports(module: str, source: str) -> list[str]:
    """The imports in `source` (the text of `module`) that point up: to a module of the same or a higher layer
    outside `module`'s own top-level package and layer 0, or to the package's public API (`vaekit`'s own
    names, which it re-exports from every layer)."""
    own, top = _layer(module), module.split(".")[1]
    problems = []
    for name in imported_modules(module, source):
        if name == "vaekit":
            problems.append(f"{module} imports from vaekit/__init__.py, which re-exports every layer")
        elif name.split(".")[1] != top and _layer(name) != 0 and _layer(name) >= own:
            problems.append(f"{module} imports {name}")
    return problems


def test_no_arrow_points_up():
    problems = []
    for module, path in _modules().items():
        if module != "vaekit.__init__":  # the public API re-exports from every layer
            problems += upward_imports(module, path.read_text())
    assert not problems, problems


def test_the_arrow_check_reports_a_module_imported_from_its_package():
    """`from vaekit import X` is the module vaekit.X, checked like `from vaekit.X import name`."""
    planted = (
        "from vaekit import rundir, training\nfrom vaekit.experiments import runner\nfrom vaekit.data import dsprites\n"
    )
    assert upward_imports("vaekit.evaluation", planted) == [
        "vaekit.evaluation imports vaekit.training",
        "vaekit.evaluation imports vaekit.experiments.runner",
    ]
    assert imported_modules("vaekit.data.mnist", "from . import idx\nfrom .images import read\n") == [
        "vaekit.data.idx",
        "vaekit.data.images",
    ]
    assert upward_imports("vaekit.plots", "from vaekit import train\n") == [
        "vaekit.plots imports from vaekit/__init__.py, which re-exports every layer"
    ]


def _component_classes() -> set[str]:
    """The names of the classes defined in models/priors.py, posteriors.py and hierarchy.py."""
    trees = [ast.parse((PACKAGE / "models" / name).read_text()) for name in COMPONENT_FILES]
    return {node.name for tree in trees for node in tree.body if isinstance(node, ast.ClassDef)}


def class_tests(source: str, classes: set[str]) -> list[str]:
    """The isinstance and issubclass calls in `source` against one of `classes`, written bare
    (`GaussianPosterior`), as an attribute (`posteriors.GaussianPosterior`), under an alias of its import, or
    in a tuple of classes."""
    tree = ast.parse(source)
    aliases = {a.asname: a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names if a.asname}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
            kinds = node.args[1:2]
            kinds = kinds[0].elts if kinds and isinstance(kinds[0], ast.Tuple) else kinds
            for kind in kinds:
                name = kind.attr if isinstance(kind, ast.Attribute) else getattr(kind, "id", None)
                if aliases.get(name, name) in classes:
                    found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_outside_models_tests_a_prior_or_a_posterior_by_its_class():
    """What the code needs to know of a prior or a posterior is an attribute or a method it declares
    (ARCHITECTURE.md, the latent-variable interface)."""
    classes = _component_classes()
    assert {"GaussianPosterior", "StandardNormalPrior", "HierarchicalPrior"} <= classes
    found = [
        f"{path.relative_to(PACKAGE)} {where}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "models" not in path.relative_to(PACKAGE).parts
        for where in class_tests(path.read_text(), classes)
    ]
    assert not found, found


def test_the_class_test_check_finds_bare_attribute_aliased_and_tupled_classes():
    classes = _component_classes()
    planted = (
        "from vaekit.models import posteriors\n"
        "from vaekit.models.priors import VampPrior as V\n"
        "from vaekit.models.hierarchy import HierarchicalPrior\n"
        "def f(q, p):\n"
        "    a = isinstance(q, posteriors.GaussianPosterior)\n"
        "    b = isinstance(p, (int, V))\n"
        "    c = isinstance(p, HierarchicalPrior)\n"
        "    return a or b or c or isinstance(q, dict) or isinstance(q, posteriors.Other)\n"
    )
    assert [line.split(":")[0] for line in class_tests(planted, classes)] == ["line 5", "line 6", "line 7"]


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

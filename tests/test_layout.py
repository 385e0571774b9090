"""The package's layout is its flow: the layering holds, importing it is cheap, and the command line
answers a mistake before torch loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "hf_segcompare"
# The layers, lowest first, as the README's "Layout" section states them: a module may import
# modules of its own layer and of lower ones only.
LAYERS = (
    ("errors", "labels", "hub_access", "plotting", "lazy"),
    ("data",),
    ("models",),
    ("evaluation",),
    ("engine",),
    ("report",),
    ("config",),
    ("pipeline",),
    ("cli",),
)
LAYER_OF = {part: index for index, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str | None:
    """The top-level part of the package a dotted module name belongs to (None: outside, or the root)."""
    names = module.split(".")
    return names[1] if len(names) > 1 and names[0] == "hf_segcompare" else None


def _imports(path: Path) -> list[str]:
    """Every hf_segcompare module `path` imports, relative imports resolved (deferred ones included)."""
    module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith("hf_segcompare.") and ":" in node.value:
            # a class named by "module:attribute" (the model catalog); a bare module name is a command to
            # run (a retry message's ``python -m hf_segcompare.cli.push``), not an import
            found.append(node.value.split(":")[0])
    return [name for name in found if name.startswith("hf_segcompare")]


def test_no_module_imports_a_higher_layer_and_no_two_parts_import_each_other():
    upward, edges = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _part(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts))
        if own is None or own in ("__init__", "__main__"):
            continue  # the lazy root names everything and imports nothing; __main__ is the console command
        assert own in LAYER_OF, f"{path} lies in {own}, which no layer names: add it to the README's layout and here"
        for target in _imports(path):
            other = _part(target)
            if other is None or other == own:
                continue
            edges.add((own, other))
            if LAYER_OF[other] > LAYER_OF[own]:
                upward.append(f"{path.relative_to(REPO_ROOT)} imports {target} (layer {LAYER_OF[other]} > "
                              f"{LAYER_OF[own]})")
    assert not upward, "\n".join(upward)
    assert not [(a, b) for a, b in edges if (b, a) in edges], "two parts import each other"


def test_no_part_imports_another_parts_private_names():
    """What one part hands another is its public names (a typed object, a function); a private name
    (``_x``) imported across parts would be a hand-off nobody declared."""
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        own = _part(module)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module and not node.level:
                continue
            base = package.removesuffix(".__init__").split(".")
            target = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]) if node.level \
                else node.module
            if not target.startswith("hf_segcompare") or _part(target) == own:
                continue
            private += [f"{path.relative_to(REPO_ROOT)} imports {target}.{alias.name}" for alias in node.names
                        if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not private, "\n".join(private)


def test_the_layers_here_are_the_readmes():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    stated = readme[readme.index("## Layout"):]
    positions = [stated.index(f"{parts[0]}.py" if index == 0 else f"`{parts[0]}/`")
                 for index, parts in enumerate(LAYERS)]
    assert positions == sorted(positions), "the README lists the layers in another order"


def _fresh(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)


HEAVY = ("torch", "transformers", "datasets")


def test_importing_the_package_and_listing_models_loads_no_framework():
    done = _fresh("import json, sys, hf_segcompare\n"
                  "names = hf_segcompare.list_models()\n"
                  "entry = hf_segcompare.get_entry('segformer-b0')\n"
                  f"print(json.dumps([names, entry.pretrained, [m for m in {HEAVY!r} if m in sys.modules]]))")
    assert done.returncode == 0, done.stderr
    names, pretrained, loaded = json.loads(done.stdout)
    assert names == ["unet", "deeplabv3plus", "vit", "segformer-b0"] and pretrained == "nvidia/mit-b0"
    assert loaded == []


def test_every_public_name_resolves():
    done = _fresh("import hf_segcompare as h\nmissing = [n for n in h.__all__ if getattr(h, n, None) is None]\n"
                  "print(missing)")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_option_and_model_mistakes_are_answered_before_torch_loads():
    script = REPO_ROOT / "scripts" / "run_seg.py"
    code = ("import json, runpy, sys\nsys.argv = [sys.argv[1], *sys.argv[2:]]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as stop:\n"
            f"    print(json.dumps([stop.code, [m for m in {HEAVY!r} if m in sys.modules]]))\n")
    for argv, expected in ((["--model", "nope"], "error: unknown model 'nope'; choose one of: unet, "),
                           (["--num_train_epoch", "3"], "error: unrecognised argument(s): --num_train_epoch (did you "
                                                        "mean --num_train_epochs?)")):
        done = _fresh(code, str(script), *argv)
        status, loaded = json.loads(done.stdout)
        assert status == 2 and loaded == [], (argv, done.stdout)
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(expected), done.stderr


def test_the_trainer_knows_no_recipe_and_no_command_line():
    trainer_module = PACKAGE / "engine" / "trainer.py"
    imported = _imports(trainer_module)
    assert not [name for name in imported if name.startswith(("hf_segcompare.models.recipes",
                                                              "hf_segcompare.config"))], imported
    source = trainer_module.read_text(encoding="utf-8")
    assert "hasattr(args" not in source and 'getattr(args, "recipe"' not in source


def test_a_trainer_from_plain_training_arguments_and_explicit_values(voc_tree, tmp_path):
    from transformers import TrainingArguments

    from hf_segcompare.data import load_voc
    from hf_segcompare.engine.trainer import SegTrainer
    from hf_segcompare.evaluation.protocol import EvalProtocol
    from hf_segcompare.models import create_model

    dataset = load_voc(voc_tree, cache_dir=tmp_path / "cache")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                             report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = SegTrainer(create_model("segformer-tiny", id2label=dataset.labels.id2label), args, dataset["train"],
                         dataset["validation"], crop_size=32, eval_size=64,
                         eval_protocol=EvalProtocol(resize="short_side", short_side=48))
    assert (trainer.crop_size, trainer.eval_size, trainer.eval_protocol.short_side) == (32, 64, 48)
    assert trainer.train_dataset[0]["pixel_values"].shape[-2:] == (32, 32)
    trainer.train()
    scores = trainer.evaluate()
    assert 0.0 <= scores["eval_mean_iou"] <= 1.0 and trainer.state.global_step == 2
    # Trainer's own two optimizer groups (no toolkit parameter groups asked for).
    assert len(trainer.optimizer.param_groups) == 2


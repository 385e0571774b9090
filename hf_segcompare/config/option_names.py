"""The command line's option names and model names, checked without importing torch.

Importing torch and transformers takes seconds; a mistyped option or model should not wait for
them. `quick_check` runs first in ``hf_segcompare.cli.run_seg``: it reads the option names from the
dataclasses the real parser is built from (ours in ``options.py`` and ``engine/training_args.py``, and
transformers' ``TrainingArguments``) with `ast`, asks the model registry (which imports no torch) for
``--model``, and refuses only what is certainly wrong. The full parser still checks everything
once the libraries are loaded, so if a source cannot be read this check simply passes.

This module imports the standard library, the errors and the model registry only.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from pathlib import Path

from ..errors import UsageError
from ..models.registry import get_entry

HERE = Path(__file__).parent
ARGUMENT_CLASSES = ("ModelArguments", "DataArguments", "SegTrainingArguments")
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def _dataclass_fields(source: Path, class_names: tuple[str, ...]) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    return {
        statement.target.id
        for node in tree.body if isinstance(node, ast.ClassDef) and node.name in class_names
        for statement in node.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
    }


@functools.lru_cache(maxsize=1)  # the sources do not change while a program runs
def known_options() -> frozenset[str] | None:
    """The option names, or None when a source cannot be read."""
    try:
        transformers = importlib.util.find_spec("transformers")  # locates it without importing it
        training_args = Path(transformers.submodule_search_locations[0]) / "training_args.py"
        options = _dataclass_fields(HERE / "options.py", ARGUMENT_CLASSES)
        options |= _dataclass_fields(HERE.parent / "engine" / "training_args.py", ARGUMENT_CLASSES)
        options |= _dataclass_fields(training_args, ("TrainingArguments",))
    except (OSError, SyntaxError, AttributeError, TypeError, ValueError):
        return None
    if "output_dir" not in options or "model" not in options:
        return None  # the sources changed shape: leave the checking to the full parser
    return frozenset(options)


def unknown_options_message(arguments: list[str], options) -> str:
    """The usage error for `arguments` no option takes, with the close matches of each flag."""
    known = [f"--{name}" for name in options]
    flags = [argument for argument in arguments if argument.startswith("--")] or arguments
    parts = []
    for argument in flags:
        flag = "--" + argument.split("=", 1)[0][2:].replace("-", "_")
        close = difflib.get_close_matches(flag, known, n=3, cutoff=0.75) if argument.startswith("--") else []
        parts.append(argument + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return f"unrecognised argument(s): {', '.join(parts)}. See run_seg.py --help."


def _model_names(argv: list[str]) -> list[str]:
    """The values given to ``--model`` in `argv` (``--model X`` or ``--model=X``)."""
    names = [argument.partition("=")[2] for argument in argv if argument.startswith("--model=")]
    names += [value for flag, value in zip(argv, argv[1:]) if flag == "--model"]
    return names


def quick_check(argv: list[str]) -> str | None:
    """The usage error of an unknown option or model in `argv`, or None."""
    if argv and argv[0].endswith(CONFIG_SUFFIXES):
        argv = argv[1:]
    for name in _model_names(argv):
        try:
            get_entry(name)
        except UsageError as error:
            return str(error)
    options = known_options()
    if options is None:
        return None
    unknown = []
    for argument in argv:
        if not argument.startswith("--") or argument == "--":
            continue
        name = argument[2:].partition("=")[0].replace("-", "_")
        # HfArgumentParser adds --no_<name> for booleans that default to True.
        if name not in options and not (name.startswith("no_") and name[3:] in options) and name != "help":
            unknown.append(argument)
    return unknown_options_message(unknown, options) if unknown else None


__all__ = ["known_options", "quick_check", "unknown_options_message"]

"""List the models ``--model`` takes: each registered name with its family (the two sides of the
comparison), what it is, its default pretrained starting point and its recipes (each also in a
version for ADE20K and Cityscapes where mmsegmentation publishes one: ``published@ade20k``).

From an installed package: ``hf-segcompare models`` (or ``python -m hf_segcompare.cli.models``).

    hf-segcompare models            # the four models of the comparison
    hf-segcompare models --all      # and their -tiny test variants (seconds on a CPU)

This reads the registry only: it imports neither torch nor transformers.
"""

import argparse
import sys

from hf_segcompare.models.registry import get_entry, list_models


def model_lines(include_test_variants: bool = False) -> list[str]:
    """One line per registered model: name, family, description, default pretrained source, recipes."""
    rows = []
    for name in list_models(include_test_variants):
        entry = get_entry(name)
        recipes = get_entry(entry.parent).recipes if entry.is_test_variant else entry.recipes
        recipe_names = sorted({recipe.partition("@")[0] for recipe in recipes})
        rows.append((name, entry.family, f"{entry.description}; pretrained: {entry.pretrained or 'none'}; "
                                         f"recipes: {', '.join(recipe_names) or 'none'}"))
    width = [max(len(row[column]) for row in rows) for column in (0, 1)]
    return [f"{name.ljust(width[0])}  {family.ljust(width[1])}  {about}" for name, family, about in rows]


def main(argv=None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="the -tiny test variants too")
    args = parser.parse_args(argv)
    print("\n".join(model_lines(args.all)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m hf_segcompare.cli.export` from the checkout: see that module (or --help) for what it does."""

import sys

from hf_segcompare.cli.export import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m hf_segcompare.cli.predict` from the checkout: see that module (or --help) for what it does."""

import sys

from hf_segcompare.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())

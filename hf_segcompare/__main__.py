"""``python -m hf_segcompare VERB ...``: the ``hf-segcompare`` command (see `hf_segcompare.cli.main`)."""

import sys

from hf_segcompare.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

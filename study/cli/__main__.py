"""``python -m study.cli``: the ``gmmpvae`` command line."""

import sys

from study.cli.main import main

sys.exit(main())

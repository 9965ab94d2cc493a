"""`python -m gankernels.bench`: the same as `gankernels bench`."""

import sys

from . import main

sys.exit(main())

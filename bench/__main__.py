"""``python -m bench``: run the benchmark suite (``--help`` lists the modes)."""

import sys

from bench.run import main

sys.exit(main())

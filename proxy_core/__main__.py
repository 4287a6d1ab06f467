"""``python -m proxy_core``: run the gateway."""

import sys

from proxy_core.main import main

sys.exit(main())

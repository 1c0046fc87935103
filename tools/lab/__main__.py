"""`python3 -m tools.lab up|down|status|ssh NAME`: the local lab (tools/lab/lab.py)."""

import sys

from tools.lab.lab import main

sys.exit(main())

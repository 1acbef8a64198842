"""`python -m xpnet ...` is the `xpnet` command."""
import sys

from xpnet.cli import main

sys.exit(main())

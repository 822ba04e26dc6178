import sys

from regbench.cli import entry

sys.exit(entry())

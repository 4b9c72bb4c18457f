"""`python -m tuning`: the tuning Job's entrypoint (same options as `kaito tune`)."""
import sys

from .cli import main

sys.exit(main(prog="python -m tuning"))

"""`python -m serving` = `kaito up`."""
import sys

from .cli import main

sys.exit(main())

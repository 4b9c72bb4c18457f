import sys

from kaito_cli import main

sys.exit(main())

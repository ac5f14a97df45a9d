import sys

from metatts.cli import main

sys.exit(main())

import sys

from shield.cli import main

sys.exit(main())

import sys

from isaprof.cli import main

sys.exit(main())

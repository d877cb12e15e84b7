import sys

from core.report.cli import main

sys.exit(main())

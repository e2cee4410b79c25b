import sys

from jaxsafe.cli import main

sys.exit(main())

import sys

from gorgon.cli import main

sys.exit(main())

"""`python -m diffskip` runs the `diffskip` command."""
import sys

from .cli import main

sys.exit(main())

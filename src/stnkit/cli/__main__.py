"""``python -m stnkit.cli`` (also ``torchrun -m stnkit.cli``) runs the command line."""

from stnkit.cli import main

raise SystemExit(main())

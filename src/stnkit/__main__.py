"""``python -m stnkit`` runs the command line (also under ``torchrun -m stnkit``)."""

from stnkit.cli import main

raise SystemExit(main())

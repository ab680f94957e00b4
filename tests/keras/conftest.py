"""tests/keras runs in two ways (KERAS_BACKEND is fixed when keras is first imported):

* in the normal suite, ``test_keras_backends.py`` launches ``python -m pytest tests/keras/backend`` once per
  backend in a subprocess with ``KERAS_BACKEND`` set (and ``STNKIT_KERAS_SUBPROCESS=1``);
* in such a subprocess only ``backend/`` is collected. To run it by hand:
  ``STNKIT_KERAS_SUBPROCESS=1 KERAS_BACKEND=jax .venv/bin/pytest tests/keras/backend``.
"""

from __future__ import annotations

import os

if os.environ.get("STNKIT_KERAS_SUBPROCESS"):
    collect_ignore = ["test_keras_backends.py"]
else:
    collect_ignore = ["backend"]

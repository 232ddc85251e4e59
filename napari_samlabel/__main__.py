"""``python -m napari_samlabel`` runs the ``samlabel`` command line."""

import sys

from napari_samlabel.cli import main

sys.exit(main())

"""napari-samlabel: weak labels to segmentation datasets with Segment Anything.

Importing the package is cheap: torch and segment_anything are imported lazily by the
engine, napari and Qt only by :mod:`napari_samlabel._napari`.
"""

__version__ = "0.1.0"

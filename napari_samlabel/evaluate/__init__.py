"""Evaluation against ground truth: segmentation metrics and simulated weak labels.

Two modules: ``metrics`` (one confusion matrix over a dataset: IoU per class, mIoU, pixel and
mean accuracy) and ``simulate`` (points, scribbles or boxes derived from dense ground truth,
to rerun a weak-label protocol on any dataset). Finding and ranking the likely failures among
pseudo labels is curation, in :mod:`napari_samlabel.curate`.
"""

"""Curation: find the likely failures among pseudo labels and queue them for review.

One module per job, lowest first: ``signals`` (how each failure signal is measured, scored
and flagged), ``matching`` (masks against ground truth: matched, merged, missed objects),
``assessment`` (per-object and per-image scores and flags, the ranking), ``queue`` (the queue
files ``queue.json``, ``queue.csv``, ``failures.txt``), ``sources`` (projects, pseudo-label
outputs, VOC trees and ground-truth folders to read from), ``histogram`` (the score histogram
as inline SVG), ``report`` (the HTML report), ``run``
(:func:`~napari_samlabel.curate.run.curate`, the whole run) and ``review`` (walking a queue
over a project, the Qt-free half of the review panel). Metrics against ground truth
(mIoU) and weak-label simulation live in :mod:`napari_samlabel.evaluate`.
"""

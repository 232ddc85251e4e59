"""Curation: failure signals, ground-truth matching, the review queue and its report."""

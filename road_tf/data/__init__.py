"""Readers, featurizers and the embedded synthetic corpus."""

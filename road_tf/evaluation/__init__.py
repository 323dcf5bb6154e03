"""Scoring: the official-exact SQuAD 2.0 metric, classification metrics, n-best span decoding."""

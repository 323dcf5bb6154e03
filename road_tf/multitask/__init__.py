"""Multi-task pre-training of the shared encoder: task samplers and the k-task gradient-averaging trainer."""

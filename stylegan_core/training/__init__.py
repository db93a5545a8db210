"""Training: the loop, snapshots, EMA and lazy regularization."""

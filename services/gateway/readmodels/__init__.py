"""Read models of the gateway: pure folds of the log, and the projector that keeps their tables."""

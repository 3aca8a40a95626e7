"""The chain saga: pure state (`evolve`) and policy (`decide`) of one chain stream."""

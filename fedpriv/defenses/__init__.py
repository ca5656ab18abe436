"""Defenses beside encryption: differential privacy and MemGuard."""

"""Threshold CKKS, one package: scheme, party, server, strategy, sight, messages, state."""

"""CKKS encryption of model updates: presets, keys, packing, wire format and bound checks."""

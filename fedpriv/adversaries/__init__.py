"""Adversaries that deviate from the protocol, modelled by what they can compute, send and ask."""

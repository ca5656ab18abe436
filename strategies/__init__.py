"""Flower strategies: the plaintext FedAvg baseline and CKKS FedAvg."""

from strategies.ckks import CkksFedAvg
from strategies.plaintext import PlaintextFedAvg

__all__ = ["CkksFedAvg", "PlaintextFedAvg"]

"""Flower strategies of fedpriv (defined in :mod:`fedpriv.strategies`)."""

from fedpriv.strategies.ckks import CkksFedAvg
from fedpriv.strategies.plaintext import PlaintextFedAvg
from fedpriv.strategies.server_noise import ServerSideNoise

__all__ = ["CkksFedAvg", "PlaintextFedAvg", "ServerSideNoise"]

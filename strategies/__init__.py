"""Flower strategies of fedpriv (from :mod:`fedpriv.strategies` and :mod:`fedpriv.defenses`)."""

from fedpriv.defenses.server_noise import ServerSideNoise
from fedpriv.strategies.ckks import CkksFedAvg
from fedpriv.strategies.plaintext import PlaintextFedAvg

__all__ = ["CkksFedAvg", "PlaintextFedAvg", "ServerSideNoise"]

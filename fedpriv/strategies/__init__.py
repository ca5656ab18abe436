"""Flower strategies of the schemes: plaintext FedAvg, CKKS FedAvg, and server-side DP noise."""

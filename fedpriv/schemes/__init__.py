"""Aggregation schemes: plaintext FedAvg, CKKS, SecAgg+, each one class behind one interface."""

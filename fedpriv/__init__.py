"""fedpriv: federated learning on Flower with CKKS-encrypted aggregation."""

__version__ = "0.1.0"

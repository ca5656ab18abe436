"""pytorch-app: a Flower / PyTorch app."""

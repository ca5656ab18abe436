"""The Flower ClientApp of fedpriv: local decrypt, train, encrypt."""

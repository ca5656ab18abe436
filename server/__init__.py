"""The Flower ServerApp of fedpriv: picks the strategy, runs the rounds, records the run."""

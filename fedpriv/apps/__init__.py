"""What the Flower ServerApp and ClientApp of fedpriv do, behind the thin top-level apps."""

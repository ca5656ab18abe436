"""`fedpriv compare`: the same federation under each arm, attacked, and reported."""

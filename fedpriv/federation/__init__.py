"""The server side of a federation: recording what crosses the wire, and the round loop."""

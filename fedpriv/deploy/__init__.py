"""Deployment on Flower's Deployment Engine: TLS material, topology, compose file, loopback."""

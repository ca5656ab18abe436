"""Figures, tables and reports of runs and attacks."""

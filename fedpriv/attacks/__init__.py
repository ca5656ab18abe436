"""Privacy attacks run on what each attacker really sees: curious server, outsider, colluder."""

"""Clients that misbehave on purpose, slowloris, the soak, and graceful shutdown under load."""

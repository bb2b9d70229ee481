"""The experiment harness: the same handlers on every runtime, under real load."""

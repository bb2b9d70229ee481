"""Running an experiment: plan, servers under test, load, cost, and the report drawn from what it wrote."""

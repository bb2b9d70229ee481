"""The load generators: wrk and h2load as closed loops (:mod:`.tools`), openload as an open loop."""

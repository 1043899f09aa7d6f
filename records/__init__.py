"""The application layer: the `records` CLI, the local broker manager, the simulator and
the one wiring module that turns settings into objects for the stages. It imports
everything below it (`pipeline`, `streams`, `sink`, `retention_jobs`); nothing imports it."""

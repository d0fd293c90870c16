"""optbench core: specs, task records, the training loop, run records, sweeps, leaderboards, CLI."""

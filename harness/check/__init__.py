"""``optbench check``: the environment, a smoke run, optimizer-step and task speed, and the report
that gathers them."""

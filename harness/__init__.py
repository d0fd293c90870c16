"""optbench core: specs, task records, the training loop, run records, sweeps, leaderboards, CLI."""

# The release this source tree is (kept equal to pyproject.toml's version by a test). Run records carry
# the installed distribution's version (harness.results.versions.package_version), this one only when
# optbench runs from a source tree that is not installed.
__version__ = "0.1.0"

"""Statistics with no I/O: intervals over seeds and tuning luck (``intervals``), four-way verdicts
against a margin with what it would take to decide (``verdicts``), time-to-target and performance
profiles (``profiles``). Pure functions of numbers; the leaderboard and the report share them."""

"""One training run: resolve a spec (``cli``), build its session (``session``), train it (``loop``)
with checkpoints that know whose they are (``checkpoint``, ``lineage``), schedules and budget branches
(``schedules``), the delayed-gradient condition (``delay``), and turn it into a record (``assemble``)."""

"""The run records: one record type built in one place (``record``) and the on-disk store that alone
knows the parquet layout (``store``). Everything that reads results goes through here."""

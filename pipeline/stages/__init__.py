"""The thin, database-facing part of each pipeline stage (see `pipeline.runner`)."""

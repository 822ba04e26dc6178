"""Sweeps: collecting the runs of a multirun directory into tables (results), counting them (status)."""

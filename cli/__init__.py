"""The `dvd360` command line."""

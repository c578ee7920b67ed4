"""The `radscribe` command line: a thin layer over the package's public API."""

"""mtaffect library: importable, tested, no argument parsing."""

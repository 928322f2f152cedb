"""mtaffect library: importable, tested, no argument parsing."""
import os

# Arrow's default allocator, mimalloc, keeps freed segments resident, so memory grew with
# the data while streaming tables (docs/architecture.md, "Measured choices"); the C
# library's allocator gives memory back. Arrow reads this when it is first imported, so
# it is set here, before any pipeline module imports pyarrow; a user's own setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

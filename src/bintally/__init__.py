"""bintally: count the objects in warehouse storage bins from a photo."""

import os

# Arrow's default allocator (mimalloc or jemalloc) tears its threads down at interpreter exit after torch has
# loaded: a process that read a Parquet file then aborts (exit 134, "terminate called without an active
# exception") about half the time after finishing its work (apache/arrow#34314). The system allocator does not.
# Set before pyarrow first allocates; a value the user set is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.1.0"

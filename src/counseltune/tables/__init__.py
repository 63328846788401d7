"""Read and write the canonical tables; every write is validated against its Pandera model."""

from counseltune.schemas.tables import CuratedDialogs, Dialogs, Quarantine, Turns
from counseltune.tables.io import TableError, empty_table, read_table, write_table

__all__ = ["CuratedDialogs", "Dialogs", "Quarantine", "TableError", "Turns", "empty_table", "read_table", "write_table"]

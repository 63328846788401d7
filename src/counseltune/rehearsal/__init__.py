"""The rehearsal: a toy-scale twin of a study run end to end on one machine (tiny stand-ins, a loopback API)."""

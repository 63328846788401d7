"""The instruments every branch may read (shared): MITI 4.2.1 and CTRS definitions, not how they are applied."""

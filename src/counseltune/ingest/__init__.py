"""Raw corpora -> dialogs/turns/quarantine tables, one module per source format."""

"""The custom code of the tiny Baichuan2 stand-in (models/tiny.py): copied into its model folder, where transformers
runs it only with trust_remote_code=True, as it runs Baichuan2's own."""

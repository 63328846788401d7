"""Contracts of counseltune: the Pandera models of every table and the JSON Schema of params.yaml."""

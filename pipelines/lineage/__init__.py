"""The lineage manifest written beside every model, and the audit CLI that reads it."""

"""Readers and writers for the field's file formats; every write is atomic."""

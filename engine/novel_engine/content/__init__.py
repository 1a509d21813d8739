"""The content library: character and campaign models, content files and their SQLite store."""

"""tfcf: serving (the export writer, its one loader, predict and recommend)."""

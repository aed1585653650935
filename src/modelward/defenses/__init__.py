"""defenses layer of modelward (see DESIGN.md)."""

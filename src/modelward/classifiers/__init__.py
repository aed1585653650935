"""classifiers layer of modelward (see DESIGN.md)."""

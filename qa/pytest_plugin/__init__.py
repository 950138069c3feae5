"""pytest glue: options, collection of check cases, result collection."""

"""HASP's pre-filters, grouping, co-add and flux filter: the native engine and the reference (hasp) engine."""

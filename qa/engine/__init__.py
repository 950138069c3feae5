"""HASP's pre-filters, grouping, co-add and flux filter: the native engine and the reference (hasp) engine."""

# The engines a run can choose (--engine); kept here, free of imports, because the pytest
# plugin needs the names in every pytest run and the engines only in a QA run.
ENGINES = ("native", "hasp")

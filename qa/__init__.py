"""hasp-qa: validation and QA of co-added Hubble (HASP) spectra, as a pytest plugin."""
__version__ = "0.1.0"

"""Reading calibrated 1-D spectra: FITS access, the in-memory model, validation."""

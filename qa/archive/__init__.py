"""MAST: fetching program files (astroquery) and the loopback MAST-protocol server for tests and offline demos."""

"""alcsdb: catalog management for the ALCS HST + Spitzer/IRAC photometric release."""

__version__ = "0.1.0"

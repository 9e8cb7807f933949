"""qsopipe: a plate-by-plate quasar catalog pipeline for SDSS/BOSS/eBOSS spectra."""

__version__ = "0.1.0"

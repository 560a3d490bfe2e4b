"""drn-repro: a verified, provenance-tracked reproduction of DRN (Sun et al., arXiv 1907.02843)."""

__version__ = "0.1.0"

"""The airspeed velocity (asv) suite of fastmlp (issue 4); see asv.conf.json at the repository
root.  The side-by-side comparison with other libraries is ``compare.py`` / ``fastmlp bench``."""

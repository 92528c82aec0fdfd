"""The litcache command line (installed as ``litcache.cli``)."""

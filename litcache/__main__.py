"""``python -m litcache`` runs the command line."""

from litcache.cli.main import main

if __name__ == "__main__":
    main()

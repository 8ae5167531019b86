"""``python -m bnsym`` runs the command-line tool."""

from bnsym.cli import main

if __name__ == "__main__":
    main()

"""`python -m builder`: the `python-image-builder` command."""
from builder.cli import main

if __name__ == "__main__":
    main()

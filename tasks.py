"""invoke tasks in a checkout (`invoke --list`): the commands of `python-image-builder`, whose
collection lives in the package (builder/cli.py) so that the installed command needs no
tasks.py."""
from builder.cli import ns  # noqa: F401  (invoke looks for `ns`)

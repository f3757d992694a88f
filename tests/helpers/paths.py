"""Where things are: the repository, the fixtures, the CLI."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
TINY = FIXTURES / "tiny"  # the tiny family: versions.yaml and its templates
TINY_FAMILY = TINY / "versions.yaml"
TODAY_FAMILY = FIXTURES / "today" / "versions.yaml"
MIRROR_FAMILY = FIXTURES / "mirror" / "versions.yaml"
SEED_PAGE = Path(os.environ.get("SEED_PAGE", TESTS / "data" / "000_5a6006424bbde431.txt"))
INVOKE = Path(sys.executable).parent / "invoke"

"""What the tests share: paths, the CLI runner, the tiny family's copies, builders files, registry
helpers and the oracles. Test modules import from here, never from one another."""

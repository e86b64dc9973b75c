"""The library that the stages and the tools share: params and paths, the model registry, the archive
reader, the prepared-data format, the training loop, the environment record, timing statistics, the
benchmark definitions. It imports no stage and no tool (tests/test_layout.py)."""

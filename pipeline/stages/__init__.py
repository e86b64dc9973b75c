"""The DVC stages, one module each, run by dvc.yaml and studies/dvc.yaml as `python -m pipeline.stages.<name>`:
a thin `main` that reads params, calls the library (pipeline.lib) and writes its outputs. A stage imports
no other stage and no tool (tests/test_layout.py)."""

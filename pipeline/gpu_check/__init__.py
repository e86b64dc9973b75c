"""The device run in one command: the LSTM cores on the GPU under JAX and torch, and the tutorial's
protocol under the faster of the two.

    scripts/gpu-check OUT_DIR [--cpu] [--budget-s 450]

scripts/gpu-check installs the wheels that `make gpu-pack` put in .gpu/wheels (Keras and what a GPU
host without TensorFlow lacks) into a temporary folder, then runs this module from the repository
root. It needs neither TensorFlow nor DVC: every step is a real stage process (`python -m
pipeline.stages.<stage>`) in a scratch project, with KERAS_BACKEND set for the step.

1. Data: the mirror tool turns the JPEG pack into an archive in the official layout (the copy of
   ../shared that `make gpu-pack` put in .gpu/shared, else ../shared itself); then the `download`
   stage (a file:// URL and the archive's md5) and `preprocess`.
2. `lstm-step` under jax, then under torch -> lstm-step-gpu-<backend>.json (10 timed rounds).
3. The faster backend: the smaller sum over both cores of the cuDNN step's median (the GPU generic
   kernel's where the cuDNN time was refused).
4. The tutorial's protocol (pipeline/profiles.py `tutorial`: all 50,000 / 10,000 images, sequential
   100 and parallel 10 epochs, batch 100, Adam 0.001) under that backend: `train` with
   `--time-limit-s`, each model of the registry in turn, fewest epochs first (parallel, then
   sequential), each with its share of the time left (in proportion to its epochs times its LSTM
   core's step time), then `evaluate` ->
   gpu-protocol.json: time to finish or the epochs done by the cap, images/s, test accuracy, curves.
5. Last, in the 100 s kept for them: the GPU tests of tests/test_lstm_step.py under each backend
   (their summary lines are recorded; a failure fails the run).

Everything goes to OUT_DIR, with the log of every step (gpu-check.log). gpu-protocol.json is written
even when a step fails, its `status` naming what failed, and the run then exits 1; only a complete GPU
run also goes to metrics/ of this checkout. Every process is killed at --budget-s (default 450 s) plus
20 s, so the run ends inside 8 minutes (a device command may take 10). Without --cpu it refuses to run
when a backend sees no GPU.

--cpu swaps the GPU for the CPU and shrinks the work (200 / 100 real images, 2 and 1 epochs, batch
10, 3 timed rounds) so that CI runs this same script end to end on a machine without a GPU; nothing
then goes to metrics/.

The package: `run` (the scratch project, the log, and processes held to the budget), `protocol` (the
work: the params, the data, each model's share of the time), `command` (the steps in order, the result
file, the command line).
"""

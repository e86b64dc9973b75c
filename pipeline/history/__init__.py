"""The benchmark's history: every commit's committed metrics as one static page, with detected changes.

    python -m pipeline.history [--rev HEAD] [--out reports/history.html] [--since REV] [--summary FILE]

Reads, from git alone (no server, no checkout), `metrics/*.json` and `dvc.lock` of every commit on the
first-parent line of `--rev`, oldest first, and writes one HTML page (Plotly, its script inlined, so
the page works offline) with one chart per measure: test accuracy, train images/s, training step time
(median, IQR as error bars), the LSTM cores' step time and inference images/s, one line per model.
Hovering a point shows the commit, its subject and the machine.

- **Points are runs.** A commit whose metrics file is byte-identical to its parent's did not run that
  stage again (DVC skipped it, or nothing was rerun); it repeats the previous run and adds no point.
- **Settings.** A line joins only runs of the same settings: the file's recorded settings (the ones
  `pipeline.gate compare` refuses to mix; both read them from pipeline/lib/metrics.py), the environment
  (device, threads, backend and Keras versions) and the data (the archive's md5 and the `preprocess` params
  in that commit's dvc.lock). A change of settings starts a new line; the page lists what changed.
- **Detected changes** (`detect`): a lookback z-score, as conbench does it. Each run is compared with up
  to LOOKBACK earlier runs of its line (at least MIN_LOOKBACK): z = (value - their mean) / sigma, where
  sigma is their sample standard deviation or the measure's noise floor, whichever is larger. |z| >
  Z_THRESHOLD marks a change. The floors: for test accuracy, the binomial standard error of an accuracy
  on that many test images; for times and rates, NOISE_FLOOR_REL of the value, measured from identical
  code run over and over on this machine (docs/history.md has the measurement and the detector's
  measured error rates).

Prints a markdown summary of the detected changes (those after `--since`, when given), for a
pull-request comment, and writes it to `--summary` when given.

The package: `read` (commits, their metrics files, one point per run and its settings), `detect` (the
lookback z-score, the lines of equal settings, the markdown summary), `render` (the page), `command`
(the command line, run by `__main__`).
"""

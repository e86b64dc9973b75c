"""The history page: one Plotly chart per measure, one line per model and settings, the detected changes
crossed. It gives no verdict (`detect` does), so it is left out of mutation testing; tests/test_history.py
loads it in headless Chromium."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from pipeline.lib import registry
from pipeline.history.detect import LOOKBACK, Z_THRESHOLD, settings_change
from pipeline.history.read import MEASURES, Commit, Measure

DASHES = ("solid", "dash", "dot", "dashdot")  # successive settings of one model


def figure(measure: Measure, grouped: dict, commits: list[Commit]) -> go.Figure:
    fig = go.Figure()
    for model in registry.names():
        for number, segment in enumerate(grouped.get((measure.key, model), []), start=1):
            hover = [
                f"<b>{p.sha[:7]}</b> {html.escape(p.subject[:80])}<br>{html.escape(p.machine)}<br>"
                f"{model}: {'not reached: at least ' if p.unreached else ''}{p.value:.4g} {measure.unit}"
                + (f" (IQR {p.spread:.3g})" if p.spread is not None else "")
                + (f"<br>z = {p.z:+.1f} against {p.baseline:.4g}" if p.z is not None else "")
                for p in segment
            ]
            fig.add_trace(
                go.Scatter(
                    x=[p.index for p in segment],
                    y=[p.value for p in segment],
                    mode="lines+markers",
                    name=f"{model}, settings {number}",
                    legendgroup=model,
                    line={"color": registry.MODELS[model].colour, "dash": DASHES[(number - 1) % len(DASHES)]},
                    error_y={
                        "type": "data",
                        "array": [p.spread or 0 for p in segment],
                        "visible": measure.spread is not None,
                    },
                    hovertext=hover,
                    hoverinfo="text",
                    meta={"role": "runs", "model": model},
                )
            )
            changed = [p for p in segment if p.changed]
            if changed:
                fig.add_trace(go.Scatter(
                    x=[p.index for p in changed], y=[p.value for p in changed], mode="markers",
                    name=f"{model}: detected change", legendgroup=model,
                    marker={"symbol": "x-open", "size": 16, "color": "black", "line": {"width": 2}},
                    hovertext=[f"change at {p.sha[:7]}: z = {p.z:+.1f}" for p in changed], hoverinfo="text",
                    meta={"role": "changes", "model": model}))
    ticks = sorted({p.index for segments in grouped.values() for s in segments for p in s})
    fig.update_layout(title=measure.title, height=380, margin={"t": 50, "b": 60},
                      xaxis={"title": "commit (oldest first)", "tickvals": ticks,
                             "ticktext": [commits[i].sha[:7] for i in ticks], "tickangle": -45},
                      yaxis={"title": measure.unit or measure.title.lower()}, hovermode="closest")
    return fig


def page(grouped: dict, commits: list[Commit], rev: str) -> str:
    charts = [figure(m, grouped, commits).to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"chart-{m.key}")
              for i, m in enumerate(MEASURES)]
    notes = []
    for (measure, model), segments in grouped.items():
        for before, after in zip(segments, segments[1:]):
            notes.append(f"<li>{measure}, {model}: new settings at {after[0].sha[:7]} "
                         f"({html.escape(settings_change(before[-1].settings, after[0].settings))})</li>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Benchmark history</title></head><body>"
            f"<h1>Benchmark history of {html.escape(rev)}</h1>"
            f"<p>{len(commits)} commits on the first-parent line; one point per commit that recorded a new run. "
            f"Lines join runs of the same settings only. Crosses mark changes detected by a lookback z-score "
            f"(|z| &gt; {Z_THRESHOLD:g} against up to {LOOKBACK} earlier runs, with a noise floor): "
            f"see docs/history.md.</p>{''.join(charts)}"
            f"<h2>Where settings changed</h2><ul>{''.join(notes) or '<li>nowhere</li>'}</ul></body></html>\n")

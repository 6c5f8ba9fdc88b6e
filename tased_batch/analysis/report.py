"""The run report page: one self-contained HTML file that says what a run did and where its time went.

Everything comes from the output itself: the run reports in ``OUTPUT/reports/`` (one per run
or resume: progress and stage clocks per minute, the verdicts), the commit records (failures)
and the store (saliency summaries, maps for the gallery). Plotly draws the plots; its script
is inlined once, with every style, so the page works offline, from S3 or from disk. The page
records script errors in its own DOM (``#report-status``), which the browser test reads.
User-derived text (ids, paths, errors) is escaped, and was scrubbed of secrets when written.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from tased_batch.core.secrets import scrub_text
from tased_batch.run.job import run_reports, run_status
from tased_batch.run.plan import Output

GALLERY = 6  # videos in the gallery
THUMB_FRAMES = 12  # frames per animated thumbnail
THUMB_WIDTH = 160
SOURCE_FRAMES = 240  # a thumbnail decodes at most this many frames of its source
PAGE = "report.html"
# (column of videos(), label): the per-video saliency summaries shown as distributions.
SUMMARIES = (
    ("focus", "focus (1 = one point, 0 = even)"),
    ("com_x_mean", "centre x (fraction of width)"),
    ("com_y_mean", "centre y (fraction of height)"),
    ("spread_x_mean", "spread x (fraction of width)"),
    ("spread_y_mean", "spread y (fraction of height)"),
)
STAGE_ORDER = ("feed", "model", "post", "write_wait", "write", "commit", "decode", "fetch")
STAGE_LABELS = {
    "feed": "waiting for frames",
    "model": "model forward",
    "post": "post-processing",
    "write_wait": "waiting for the writer",
    "write": "writer (encode, upload)",
    "commit": "commit",
    "decode": "decoding (all workers)",
    "fetch": "fetching (all threads)",
}
# Stages of the actor's own timeline (they add up to its wall time); the rest run beside it.
ACTOR_STAGES = ("feed", "model", "post", "write_wait", "commit")

_GUARD = """
window.__reportErrors = [];
window.addEventListener('error', function (e) { window.__reportErrors.push(String(e.message || e)); });
(function () {
  var original = console.error;
  console.error = function () {
    window.__reportErrors.push(Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
})();
"""
_CHECK = """
window.addEventListener('load', function () {
  setTimeout(function () {
    var plots = document.querySelectorAll('.report-plot');
    var drawn = 0;
    plots.forEach(function (p) { if (p.querySelector('svg.main-svg')) { drawn += 1; } });
    var status = document.getElementById('report-status');
    status.setAttribute('data-plots', String(plots.length));
    status.setAttribute('data-drawn', String(drawn));
    status.setAttribute('data-errors', JSON.stringify(window.__reportErrors));
    status.textContent = drawn + ' of ' + plots.length + ' plots drawn; ' + window.__reportErrors.length + ' errors';
  }, 0);
});
"""
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
th { text-align: left; } .verdict { background: #f4f7fb; padding: 0.6em 1em; border-left: 4px solid #3c78d8; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; } .gallery figure { margin: 0; font-size: 0.8em; }
.muted { color: #777; } #report-status { color: #999; font-size: 0.75em; }
"""


def _figure_html(fig: Any, name: str) -> str:
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=name, config={"displaylogo": False})
    return f'<div class="report-plot" data-plot="{name}">{body}</div>'


def _when(report: dict[str, Any], minute: int) -> datetime:
    started = datetime.strptime(report["started"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return started + timedelta(minutes=minute)


def _label(report: dict[str, Any], index: int) -> str:
    attempt = report.get("attempt") or {}
    kind = attempt.get("kind", "run") + (", interrupted" if attempt.get("interrupted") else "")
    return f"run {attempt.get('number', index + 1)} ({kind}, {report.get('started', '?')})"


def _progress_figures(reports: list[dict[str, Any]]) -> list[str]:
    import plotly.graph_objects as go

    done = go.Figure()
    rate = go.Figure()
    for i, report in enumerate(reports):
        rows = [r for r in report.get("timeline", []) if r.get("actor") is None]
        if not rows:
            continue
        x = [_when(report, r["minute"] + 1) for r in rows]
        label = _label(report, i)
        done.add_trace(go.Scatter(x=x, y=np.cumsum([r["videos"] for r in rows]).tolist(), name=label, mode="lines"))
        rate.add_trace(go.Scatter(x=x, y=[r["frames"] / 60.0 for r in rows], name=label, mode="lines+markers"))
    done.update_layout(title="videos finished (each run or resume is one line)", height=320, yaxis_title="videos")
    rate.update_layout(title="frames per second, per minute", height=320, yaxis_title="frames/s")
    return [_figure_html(done, "plot-progress"), _figure_html(rate, "plot-rate")]


def _stage_figures(reports: list[dict[str, Any]]) -> list[str]:
    import plotly.graph_objects as go

    per_actor: dict[str, list[tuple[datetime, dict[str, Any]]]] = {}
    for report in reports:
        for row in report.get("timeline", []):
            if row.get("actor") is not None:
                per_actor.setdefault(str(row["actor"]), []).append((_when(report, row["minute"]), row))
    figures = []
    for actor, rows in sorted(per_actor.items(), key=lambda kv: int(kv[0]))[:16]:
        fig = go.Figure()
        when = [w for w, _ in rows]
        for stage in STAGE_ORDER:
            values = [row["stages"].get(stage, 0.0) for _, row in rows]
            if not any(values):
                continue
            if stage in ACTOR_STAGES:  # parts of the actor's own minute: stacked
                fig.add_trace(go.Bar(x=when, y=values, name=STAGE_LABELS[stage]))
            else:  # beside it (a writer thread, decode workers, fetch threads)
                fig.add_trace(go.Scatter(x=when, y=values, name=STAGE_LABELS[stage], mode="lines+markers"))
        fig.update_layout(
            barmode="stack",
            title=f"actor {actor}: seconds per stage, per minute (bars add up to the actor's time)",
            height=300,
            yaxis_title="seconds",
        )
        figures.append(_figure_html(fig, f"plot-actor-{actor}"))
    return figures


def _verdict_html(reports: list[dict[str, Any]]) -> str:
    parts = []
    for i, report in enumerate(reports):
        verdict = report.get("time") or {}
        label = html.escape(_label(report, i))
        if not verdict:
            parts.append(f"<p class='muted'>{label}: no stage times (nothing ran, or an older version)</p>")
            continue
        rows = "".join(
            f"<tr><td>{html.escape(actor)}</td><td>{html.escape(str(v.get('limit')))}</td>"
            f"<td>{v.get('model_busy', 0):.0%}</td><td>{html.escape(str(v.get('advice', '')))}</td></tr>"
            for actor, v in sorted((report.get("actors") or {}).items(), key=lambda kv: int(kv[0]))
        )
        stages = ", ".join(
            f"{STAGE_LABELS.get(k, k)} {float(s):.1f} s" for k, s in sorted(verdict.get("stages", {}).items())
        )
        parts.append(
            f"<div class='verdict'><b>{label}</b>: limited by <b>{html.escape(str(verdict.get('limit')))}</b>, "
            f"model busy {float(verdict.get('model_busy', 0)):.0%}.<br>{html.escape(str(verdict.get('advice', '')))}"
            f"<br><span class='muted'>{html.escape(stages)}; exit code {html.escape(str(report.get('exit_code')))}"
            f"{'; stalled: ' + html.escape(str(report['stalled'])) if report.get('stalled') else ''}</span></div>"
            f"<table><tr><th>actor</th><th>limit</th><th>model busy</th><th>advice</th></tr>{rows}</table>"
        )
    return "".join(parts) or "<p class='muted'>no run report yet (the run was interrupted before its end)</p>"


def _failures_html(summary: dict[str, Any]) -> tuple[str, list[str]]:
    import plotly.graph_objects as go

    by_reason = summary.get("failures_by_reason") or {}
    if not by_reason:
        return "<p>no failed videos</p>", []
    fig = go.Figure(go.Bar(x=list(by_reason), y=list(by_reason.values())))
    fig.update_layout(title="failed videos by reason", height=280, yaxis_title="videos")
    rows = []
    for failure in summary.get("failures", [])[:500]:
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(failure.get(k) or ''))}</td>" for k in ("reason", "video_id", "source", "error")
            )
            + "</tr>"
        )
    table = "<table><tr><th>reason</th><th>video</th><th>source</th><th>error</th></tr>" + "".join(rows) + "</table>"
    return table, [_figure_html(fig, "plot-failures")]


def _summary_figures(videos: Any) -> list[str]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ok = [row for row in videos.to_pylist() if row.get("status") == "ok"] if videos is not None else []
    fig = make_subplots(rows=1, cols=len(SUMMARIES), subplot_titles=[label for _, label in SUMMARIES])
    for i, (column, _) in enumerate(SUMMARIES, start=1):
        values = [row[column] for row in ok if row.get(column) is not None]
        fig.add_trace(go.Histogram(x=values, nbinsx=20, showlegend=False, name=column), row=1, col=i)
    fig.update_layout(title=f"saliency summaries of {len(ok)} videos", height=300)
    return [_figure_html(fig, "plot-summaries")]


def _source_frames(source: str, wanted: set[int]) -> dict[int, np.ndarray]:
    """Frames ``wanted`` of a local source (decoding stops after the last); remote sources are not read."""
    from tased_batch.analysis.render import _frames, _open_source

    if "://" in source and not source.startswith("file://"):
        return {}
    found: dict[int, np.ndarray] = {}
    container = _open_source(source)
    with container:
        for index, rgb in enumerate(_frames(container, source)):
            if index in wanted:
                found[index] = rgb
            if index >= max(wanted):
                break
    return found


def _thumbnail(store: Any, video_id: str, source: str | None) -> tuple[str, str]:
    """An animated GIF (data URI) of a few maps over their frames, and what it shows."""
    from PIL import Image

    from tased_batch.analysis.render import _resize, blend, colorize

    maps = store.maps(video_id)
    frames = store.frame_indices(video_id)
    early = np.flatnonzero(frames < SOURCE_FRAMES)
    picks = early if len(early) else np.arange(len(frames))
    picks = picks[np.linspace(0, len(picks) - 1, min(THUMB_FRAMES, len(picks))).astype(int)]
    pictures: list[np.ndarray] = []
    what = "maps over their frames"
    try:
        decoded = _source_frames(source, {int(frames[p]) for p in picks}) if source else {}
    except Exception:  # noqa: BLE001 - an unreadable source still gets its maps shown
        decoded = {}
    for p in picks:
        rgb = decoded.get(int(frames[p]))
        if rgb is None:
            what = "maps only (source not read)"
            height = max(1, round(THUMB_WIDTH * maps.shape[1] / maps.shape[2]))
            pictures.append(colorize(_resize(maps[p], height, THUMB_WIDTH)))
            continue
        height = max(1, round(THUMB_WIDTH * rgb.shape[0] / rgb.shape[1]))
        small = np.asarray(Image.fromarray(rgb).resize((THUMB_WIDTH, height), Image.Resampling.BILINEAR))
        pictures.append(blend(small, _resize(maps[p], height, THUMB_WIDTH), 0.5))
    images = [Image.fromarray(np.ascontiguousarray(p)) for p in pictures]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=250, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buffer.getvalue()).decode(), what


def _gallery_html(store: Any, videos: Any) -> str:
    if store is None or videos is None:
        return "<p class='muted'>no results yet</p>"
    items = []
    for row in [r for r in videos.to_pylist() if r.get("status") == "ok"][:GALLERY]:
        video_id = str(row["video_id"])
        try:
            uri, what = _thumbnail(store, video_id, row.get("source"))
        except Exception as exc:  # noqa: BLE001 - one unreadable video leaves the others
            items.append(f"<figure>{html.escape(video_id)}: {html.escape(scrub_text(str(exc)))}</figure>")
            continue
        items.append(
            f"<figure><img src='{uri}' alt='{html.escape(video_id)}' width='{THUMB_WIDTH}'>"
            f"<figcaption>{html.escape(video_id)} <span class='muted'>{html.escape(what)}</span></figcaption></figure>"
        )
    return "<div class='gallery'>" + "".join(items) + "</div>" if items else "<p>no video has maps yet</p>"


def _attempts_html(reports: list[dict[str, Any]]) -> str:
    rows = []
    for i, report in enumerate(reports):
        attempt = report.get("attempt") or {}
        rows.append(
            f"<tr><td>{html.escape(_label(report, i))}</td><td>{attempt.get('shards_done_before', '?')}</td>"
            f"<td>{report.get('shards_run', '?')}</td><td>{report.get('frames_this_run', 0):,}</td>"
            f"<td>{float(report.get('frames_per_second', 0)):.1f}</td><td>{report.get('actor_restarts', 0)}</td>"
            f"<td>{len(report.get('unfinished_shards') or {})}</td><td>{report.get('exit_code', '?')}</td></tr>"
        )
    head = (
        "<tr><th>run</th><th>shards done before</th><th>shards run</th><th>frames</th><th>frames/s</th>"
        "<th>actor restarts</th><th>left unfinished</th><th>exit</th></tr>"
    )
    return "<table>" + head + "".join(rows) + "</table>"


def _sections(output_uri: str, storage_options: dict | None) -> Iterator[str]:
    from tased_batch.stores.reader import open_results

    output = Output(output_uri, storage_options)
    reports = run_reports(output)
    summary = run_status(output_uri, storage_options)
    try:
        store = open_results(output_uri, storage_options)
        videos = store.videos()
    except Exception:  # noqa: BLE001 - a run with no committed shard has no store to read yet
        store, videos = None, None
    s, v = summary["shards"], summary["videos"]
    yield f"<h1>tased-batch run report: {html.escape(output_uri)}</h1>"
    yield (
        f"<p>shards {s['done']}/{s['total']} done, {s['pending']} pending · videos {v['done']} done, "
        f"{v['failed']} failed, {v['pending']} pending of {v['total']} · {summary.get('frames_done', 0):,} frames"
        f" · page made {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}</p>"
    )
    yield "<h2>Runs and resumes</h2>" + _attempts_html(reports)
    yield "<h2>Where the time went</h2>" + _verdict_html(reports)
    yield "<h2>Progress</h2>" + "".join(_progress_figures(reports))
    yield "<h2>Stages per actor over time</h2>" + (
        "".join(_stage_figures(reports)) or "<p class='muted'>no stage times</p>"
    )
    table, figures = _failures_html(summary)
    yield "<h2>Failures</h2>" + "".join(figures) + table
    yield "<h2>Saliency summaries</h2>" + "".join(_summary_figures(videos))
    yield "<h2>Gallery</h2>" + _gallery_html(store, videos)


def build_report(output_uri: str, storage_options: dict | None = None) -> str:
    """The report page of the run at ``output_uri``, as one self-contained HTML document."""
    import plotly.offline

    body = "".join(_sections(output_uri, storage_options))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>tased-batch report</title>"
        f"<style>{_STYLE}</style><script>{_GUARD}</script>"
        f"<script>{plotly.offline.get_plotlyjs()}</script></head>"
        f"<body>{body}"
        f"<p id='report-status'>loading</p><script>{_CHECK}</script></body></html>"
    )


def write_report(output_uri: str, storage_options: dict | None = None, out: str | None = None) -> str:
    """Write the page to ``out`` (a local path or URI), by default ``OUTPUT/reports/report.html``; returns where."""
    import fsspec

    page = build_report(output_uri, storage_options).encode()
    if out is None:
        output = Output(output_uri, storage_options)
        output.fs.makedirs(f"{output.root}/reports", exist_ok=True)
        target = f"{output.root}/reports/{PAGE}"
        output.fs.pipe(target, page)
        return target if "://" not in output_uri else f"{output_uri.rstrip('/')}/reports/{PAGE}"
    with fsspec.open(out, "wb", **(storage_options or {})) as f:
        f.write(page)
    return out

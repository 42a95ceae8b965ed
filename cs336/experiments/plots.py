"""Figures of the experiments, in one style, built from logged runs (never by hand).

Every figure carries a footer naming its scale, configuration and hardware. `make figures` calls
`make_figures()`, which rebuilds each figure in `FIGURES` from the committed logs in `results/` and
writes `figures/<name>.png` and `.svg`; the notebooks call the same functions.

>>> draw("06_lr_sweep")   # figures/06_lr_sweep.png and .svg from results/lr_cpu  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from cs336.errors import CS336Error
from cs336.experiments.runs import load_runs, summarize_runs, sweep_info
from cs336.figures import save_figure
from cs336.paths import RESULTS_DIR, figures_dir

# The configuration keys the figures read (the training config's dotted names).
LR = "optim.lr"
BATCH = "batch_size"
MODEL_KEYS = ("model.vocab_size", "model.context_length", "model.d_model", "model.num_layers", "model.num_heads", "model.d_ff")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "figure.figsize": (10, 6.5),
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
    "svg.hashsalt": "cs336",  # stable SVG ids, so re-running `make figures` changes nothing
}
DIVERGED = dict(marker="x", color="crimson", markersize=9, markeredgewidth=2, linestyle="none")


def style():
    """The figures' matplotlib style, as a context manager: `with style(): ...`."""
    return plt.rc_context(STYLE)


def _finite(values: pd.Series) -> pd.Series:
    return values.map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))


def plot_curves(
    ax,
    runs: pd.DataFrame,
    *,
    x: str = "step",
    y: str = "val_loss",
    label: Callable[[pd.DataFrame], str] | None = None,
    colors: dict[str, str] | None = None,
    cap: float | None = None,
) -> None:
    """One line per run of `y` against `x`. A run that diverged ends in a red ×, at its last finite
    value, and says "(diverged)" in the legend; non-finite values are left out of the line. Values
    above `cap` are drawn at the cap (so one exploding run does not flatten the others), and a ×
    drawn there is labelled with its true value."""
    labelled = set()  # runs of one condition (its seeds) share a colour and one legend entry
    for i, (run, g) in enumerate(runs.groupby("run", sort=False)):
        g = g[g[y].notna()].sort_values(x) if y in g else g.iloc[0:0]
        if g.empty:
            continue
        ok = _finite(g[y])
        diverged = g["status"].iloc[0] == "diverged" or not ok.all()
        text = (label(g) if label else str(run)) + (" (diverged)" if diverged else "")
        color = (colors or {}).get(run, f"C{i % 10}")
        ys = g.loc[ok, y].clip(upper=cap) if cap is not None else g.loc[ok, y]
        ax.plot(g.loc[ok, x], ys, color=color, label=text if text not in labelled else "_nolegend_")
        labelled.add(text)
        if diverged and ok.any():
            last = g[ok].iloc[-1]
            ax.plot([last[x]], [ys.iloc[-1]], **DIVERGED)
            if cap is not None and last[y] > cap:
                ax.annotate(f"{last[y]:.2g}", (last[x], cap), textcoords="offset points", xytext=(6, -4), fontsize=7, color="crimson")
    ax.set_xlabel({"step": "step", "tokens": "tokens", "wall_s": "wall-clock (s)"}.get(x, x))
    ax.set_ylabel({"val_loss": "validation loss", "train_loss": "training loss"}.get(y, y))


def plot_final(ax, summary: pd.DataFrame, key: str, *, y: str = "final_val_loss", label: str | None = None, logx: bool = True, color: str = "C0") -> None:
    """Final loss against a swept value; diverged runs are red × at the top of the axes."""
    s = summary.sort_values(key)
    ok = ~s["diverged"] & _finite(s[y])
    ax.plot(s.loc[ok, key], s.loc[ok, y], "o-", color=color, label=label)
    if (~ok).any():
        top = s.loc[ok, y].max() if ok.any() else 1.0
        ax.plot(s.loc[~ok, key], [top * 1.05] * int((~ok).sum()), **DIVERGED, label="diverged")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(key.split(".")[-1])
    ax.set_ylabel(y.replace("_", " "))


def lr_colors(summary: pd.DataFrame, key: str = LR) -> dict[str, str]:
    """Runs coloured along a sequential map by their value of `key` (low: light, high: dark)."""
    values = np.log10(summary[key].astype(float))
    span = (values.max() - values.min()) or 1.0
    cmap = plt.get_cmap("plasma")
    return {r: matplotlib.colors.to_hex(cmap(0.85 - 0.85 * (v - values.min()) / span)) for r, v in zip(summary["run"], values)}


def footer(fig, summary: pd.DataFrame, info: dict, note: str = "") -> None:
    """The provenance line every figure carries: scale, model shape, seeds, hardware."""
    first = summary.iloc[0]
    shape = ", ".join(f"{k.split('.')[-1]} {first[k]}" for k in MODEL_KEYS if k in summary and summary[k].nunique() == 1)
    seeds = sorted(summary["seed"].unique()) if "seed" in summary else []
    parts = [
        f"scale: {info.get('scale') or '?'}",
        f"config: {info.get('base', '?')} ({shape})",
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(int(x)) for x in seeds)}" if seeds else "seed: ?",
        f"hardware: {info.get('hardware', 'unknown')}" + (f", {info['threads_per_run']} thread(s) a run" if info.get("threads_per_run") else ""),
    ]
    text = " · ".join(parts) + (f"\n{note}" if note else "")
    fig.text(0.01, 0.005, text, fontsize=7, color="0.35", va="bottom", ha="left", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))


def initial_cap(runs: pd.DataFrame, factor: float = 1.2) -> float | None:
    """A y-axis cap a little above the untrained model's loss (the first evaluation)."""
    first = runs.loc[(runs["kind"] == "eval") & (runs["step"] == 0), "val_loss"]
    return float(first.max()) * factor if len(first) else None


def _load(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    if not root.is_dir():
        raise CS336Error(f"no results at {root}; run the sweep first (`make reproduce`)")
    runs = load_runs(root)
    return runs, summarize_runs(runs), sweep_info(root)


def figure_lr_sweep(root: str | Path):
    """Learning-rate sweep: validation loss against steps and wall-clock, training loss against
    steps (to show spikes), and final validation loss against the learning rate."""
    runs, summary, info = _load(Path(root))
    colors = lr_colors(summary)
    label = lambda g: f"lr {g[LR].iloc[0]:g}"
    cap = initial_cap(runs)
    with style():
        fig, axes = plt.subplots(2, 2)
        plot_curves(axes[0, 0], runs, y="val_loss", label=label, colors=colors, cap=cap)
        plot_curves(axes[0, 1], runs, x="wall_s", y="val_loss", label=label, colors=colors, cap=cap)
        plot_curves(axes[1, 0], runs, y="train_loss", label=label, colors=colors, cap=cap)
        plot_final(axes[1, 1], summary, LR)
        axes[0, 0].legend()
        axes[0, 0].set_title("validation loss vs steps")
        axes[0, 1].set_title("vs wall-clock (noisy: shared machine)")
        axes[1, 0].set_title("training loss (spikes at the edge of stability)")
        axes[1, 1].set_title("final validation loss vs learning rate")
        fig.suptitle(f"Learning-rate sweep ({info.get('name', Path(root).name)})")
        footer(fig, summary, info)
    return fig


def figure_batch_size(root: str | Path):
    """Batch-size sweep at equal tokens: validation loss against tokens and wall-clock, and the
    final loss against batch size for each learning rate tried."""
    runs, summary, info = _load(Path(root))
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
        # each (batch size, lr) over its seeds: mean ± standard deviation of the final loss
        cond = summary.groupby([BATCH, LR])["final_val_loss"].agg(["mean", "std"]).reset_index()
        best = cond.loc[cond.groupby(BATCH)["mean"].idxmin()].rename(columns={"mean": "final_val_loss"})
        best_keys = set(zip(best[BATCH], best[LR]))
        best_runs = runs[[k in best_keys for k in zip(runs[BATCH], runs[LR])]]
        label = lambda g: f"bs {g[BATCH].iloc[0]}, lr {g[LR].iloc[0]:g}"
        colors = lr_colors(summary[[k in best_keys for k in zip(summary[BATCH], summary[LR])]], BATCH)
        cap = initial_cap(runs, 1.3)
        plot_curves(axes[0], best_runs, x="tokens", label=label, colors=colors, cap=cap)
        plot_curves(axes[1], best_runs, x="wall_s", label=label, colors=colors, cap=cap)
        # the rate every batch size was tried at, and the best of those tried for each batch size
        fixed = summary.groupby(LR)[BATCH].nunique().idxmax()
        at_fixed = cond[cond[LR] == fixed]
        axes[2].errorbar(at_fixed[BATCH], at_fixed["mean"], yerr=at_fixed["std"].fillna(0), fmt="o-", color="C0", capsize=3,
                         label=f"fixed lr {fixed:g} (mean ± sd over seeds)")
        axes[2].errorbar(best[BATCH], best["final_val_loss"], yerr=best["std"].fillna(0), fmt="s--", color="C1", capsize=3,
                         label="lr retuned per batch size")
        for _, r in best.iterrows():
            axes[2].annotate(f"{r[LR]:g}", (r[BATCH], r["final_val_loss"]), textcoords="offset points", xytext=(4, -10), fontsize=7, color="C1")
        axes[2].set_xscale("log", base=2)
        axes[2].set_xticks(sorted(summary[BATCH].unique()), [str(b) for b in sorted(summary[BATCH].unique())])
        axes[2].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axes[0].legend()
        axes[2].legend()
        axes[0].set_title("best lr per batch size: loss vs tokens")
        axes[1].set_title("vs wall-clock (noisy: shared machine)")
        axes[2].set_title("final validation loss vs batch size")
        fig.suptitle(f"Batch-size sweep at equal tokens ({info.get('name', Path(root).name)})")
        footer(fig, summary, info)
    return fig


# The four ablations: (title, the config key, its ablated value); each panel also shows the baseline.
ABLATIONS = (
    ("no RMSNorm", "model.norm", "none"),
    ("post-norm", "model.norm", "post"),
    ("NoPE (no position encoding)", "model.position", "nope"),
    ("SiLU FFN (d_ff = 4·d_model)", "model.ffn", "silu"),
)


def figure_ablations(root: str | Path):
    """Each ablation's validation loss against steps beside the baseline at the same lr(s)."""
    runs, summary, info = _load(Path(root))
    baseline = summary[(summary["model.norm"] == "pre") & (summary["model.position"] == "rope") & (summary["model.ffn"] == "swiglu")]
    with style():
        fig, axes = plt.subplots(2, 2, sharex=True)
        for ax, (title, key, value) in zip(axes.flat, ABLATIONS):
            ablated = summary[summary[key] == value]
            lrs = set(ablated[LR])
            base = baseline[baseline[LR].isin(lrs)]
            chosen = pd.concat([base, ablated])
            colors = {}
            for i, lr in enumerate(sorted(lrs, reverse=True)):
                for r in base[base[LR] == lr]["run"]:
                    colors[r] = f"C{2 * i}"
                for r in ablated[ablated[LR] == lr]["run"]:
                    colors[r] = f"C{2 * i + 1}"
            label = lambda g, key=key: f"{key.split('.')[-1]}={g[key].iloc[0]}, lr {g[LR].iloc[0]:g}"
            plot_curves(ax, runs[runs["run"].isin(chosen["run"])], label=label, colors=colors, cap=initial_cap(runs))
            ax.set_title(title)
            ax.legend()
        fig.suptitle(f"Ablations ({info.get('name', Path(root).name)})")
        footer(fig, summary, info)
    return fig


def figure_leaderboard_track(track: str | Path, screen: str | Path):
    """The CPU leaderboard track: each idea's one-seed screen (its difference from the baseline), the
    three-seed comparisons (every seed, mean ± sd, p against the baseline), and the validation
    curves against wall-clock of the baseline, the record and the lowest other point, if lower."""
    from cs336.experiments.records import BASELINE_RERUN, CPU_RECORDS, track_table  # records imports nothing of plots

    runs, summary, info = _load(Path(track))
    screened = track_table(screen).drop(index="baseline")["vs baseline"].sort_values()
    table = track_table(track)
    seeds = runs.drop_duplicates("run").assign(condition=lambda d: d["run"].str.partition("__seed=")[0])
    finals = summary.assign(condition=summary["run"].str.partition("__seed=")[0])
    with style():
        height = max(5.0, 1.5 + 0.2 * len(screened))  # a readable row per screened idea
        fig, axes = plt.subplots(1, 3, figsize=(15, height), gridspec_kw={"width_ratios": [1, 1, 1.2]})
        ax = axes[0]
        ax.barh(screened.index, screened.values, color=["C2" if v < 0 else "C3" for v in screened.values])
        for i, v in enumerate(screened.values):  # right of the zero line (a loss) or of the bar's end (a gain)
            ax.annotate(f"{v:+.3f}", (max(v, 0), i), textcoords="offset points", xytext=(3, -3), fontsize=7, ha="left")
        ax.axvline(0, color="0.3", lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel("validation loss − baseline's (nats/token)")
        ax.set_title("screen: one seed, one core, two runs at a time")
        ax = axes[1]
        order = table.sort_values("mean").index
        base = table.loc["baseline", "mean"]
        for i, condition in enumerate(order):
            f = finals[finals["condition"] == condition]["final_val_loss"]
            row = table.loc[condition]
            color = "0.4" if condition in ("baseline", BASELINE_RERUN) else ("C2" if row["mean"] < base else "C3")
            ax.plot(f, [i] * len(f), "o", color=color, alpha=0.5, markersize=4)
            ax.errorbar([row["mean"]], [i], xerr=[row["sd"]], fmt="D", color=color, capsize=3)
            if condition != "baseline" and pd.notna(row.get("p")):
                ax.annotate(f"{row['vs baseline']:+.3f}, p={row['p']:.2g}", (row["mean"] + row["sd"], i),
                            textcoords="offset points", xytext=(4, -3), fontsize=7)
        ax.axvline(base, color="0.4", lw=0.8, ls="--")
        ax.set_yticks(range(len(order)), list(order))
        ax.invert_yaxis()
        ax.set_xlabel("final validation loss (every window; dots: seeds, ◆: mean ± sd)")
        ax.set_title(f"the track: both cores, {len(set(seeds['seed']))} seeds each")
        ax = axes[2]
        record = CPU_RECORDS[-1]
        lowest = next(c for c in order if c != "baseline")
        shown = [c for c in dict.fromkeys(("baseline", *CPU_RECORDS, lowest)) if c in set(seeds["condition"])]
        r = runs[runs["run"].str.partition("__seed=")[0].isin(shown)]
        hue = {"baseline": "C0", record: "C2", **{c: f"C{k}" for c, k in zip([c for c in shown if c not in ("baseline", record)], (1, 4, 5))}}
        colors = {run: hue[run.partition("__seed=")[0]] for run in r["run"].unique()}
        low = float(finals["final_val_loss"].min())
        condition_of = lambda run: run.partition("__seed=")[0]
        ensembles = {condition_of(run) for run in r.loc[r.get("ensemble", pd.Series(1, index=r.index)) > 1, "run"]}
        single = r[~r["run"].map(condition_of).isin(ensembles)]
        plot_curves(ax, single.assign(minutes=single["wall_s"] / 60), x="minutes", colors=colors, cap=low + 1.5,
                    label=lambda g: f"{condition_of(g['run'].iloc[0])} ({table.loc[condition_of(g['run'].iloc[0]), 'mean']:.3f} mean)")
        if ensembles:  # an ensemble's log holds its final loss alone: its members' curves, and a star at the end
            members = load_runs(track, members=True)
            members = members[members["run"].str.contains("/member_") & members["run"].map(condition_of).isin(ensembles)]
            member_colors = {run: colors[run.partition("/")[0]] for run in members["run"].unique()}
            plot_curves(ax, members.assign(minutes=members["wall_s"] / 60), x="minutes", colors=member_colors, cap=low + 1.5,
                        label=lambda g: f"{condition_of(g['run'].iloc[0])}: a member each")
            for condition in sorted(ensembles):
                ends = r[(r["run"].map(condition_of) == condition) & r["val_loss"].notna()]
                ax.plot(ends["wall_s"] / 60, ends["val_loss"], "*", markersize=11, color=colors[ends["run"].iloc[0]],
                        label=f"their mixture ({table.loc[condition, 'mean']:.3f} mean)")
        ax.set_ylim(low - 0.1, low + 1.55)
        ax.set_xlabel("wall-clock (min)")
        ax.set_ylabel(f"validation loss (axis cut at {low + 1.5:.2f})")
        ax.set_title(f"validation curves, every seed; record {record}", fontsize=8, loc="right")
        ax.legend(fontsize=7, loc="lower left")  # below the curves until their last minutes
        fig.suptitle(f"The CPU leaderboard track ({info.get('name', Path(track).name)}): 10 minutes, validation over every window")
        footer(fig, summary, info, note="screen: one seed on one core beside another run, so fewer steps than the track; "
               "it orders the ideas, the track measures them (paired t-test against the baseline over the same seeds)")
    return fig


def figure_corpora(root: str | Path, reference: str | Path):
    """One model on two corpora: the sweep in `root` (OpenWebText) beside the learning-rate sweep in
    `reference` (TinyStories) at the same rates. The final validation loss of each against the
    learning rate, and the training and validation curves of each corpus's best run."""
    runs, summary, info = _load(Path(root))
    ref_runs, ref_summary, ref_info = _load(Path(reference))
    name, ref_name = info.get("name", Path(root).name), ref_info.get("name", Path(reference).name)
    corpus, ref_corpus = "OpenWebText", "TinyStories"
    ref_summary = ref_summary[ref_summary[LR].isin(set(summary[LR]))]
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        plot_final(axes[0], summary, LR, label=f"{corpus} ({name})", color="C3")
        plot_final(axes[0], ref_summary, LR, label=f"{ref_corpus} ({ref_name})", color="C0")
        axes[0].set_ylabel("final validation loss (nats per token)")
        axes[0].set_title("final validation loss vs learning rate")
        axes[0].legend()
        ax = axes[1]
        for label, color, r, s in ((corpus, "C3", runs, summary), (ref_corpus, "C0", ref_runs, ref_summary)):
            best = s.loc[s["final_val_loss"].idxmin()]
            g = r[r["run"] == best["run"]]
            for y, style_, what in (("val_loss", "-", "validation"), ("train_loss", ":", "training")):
                points = g[g[y].notna()].sort_values("step")
                ax.plot(points["step"], points[y], style_, color=color, label=f"{label}, lr {best[LR]:g}: {what}")
        ax.set_ylim(top=initial_cap(pd.concat([runs, ref_runs]), 1.02))
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per token)")
        ax.set_title("the best run of each corpus")
        ax.legend()
        fig.suptitle(f"The same model on {corpus} and on {ref_corpus}")
        footer(fig, summary, info, note=f"{ref_corpus}: {ref_name}, the same model and steps. Each corpus has its own 2,000-id BPE, "
               "so a token holds a different number of bytes: notebook 09 converts the losses to bits per byte.")
    return fig


# figure name → (builder, the results folders it reads, relative to the results root, in the
# order the builder takes them)
FIGURES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "06_lr_sweep": (figure_lr_sweep, ("lr_cpu",)),
    "06_batch_size": (figure_batch_size, ("batch_size_cpu",)),
    "08_ablations": (figure_ablations, ("ablations_cpu",)),
    "09_owt_cpu": (figure_corpora, ("owt_cpu", "lr_cpu")),
    "10_leaderboard_cpu": (figure_leaderboard_track, ("leaderboard_track_cpu", "leaderboard_screen_cpu")),
}


def draw(name: str, results: str | Path = RESULTS_DIR, out_dir: str | Path | None = None) -> Path:
    """Build figure `name` (a key of `FIGURES`) from the logs under `results` and write it as
    `<out_dir>/<name>.png` and `.svg` (default out_dir: `figures_dir()`); return the PNG's path."""
    build, folders = FIGURES[name]
    with style():  # tick labels and sizes are settled when the figure is drawn, i.e. saved
        fig = build(*(Path(results) / folder for folder in folders))
        return save_figure(fig, Path(out_dir or figures_dir()) / f"{name}.png", svg=True, close=True)


def make_figures(results: str | Path = RESULTS_DIR, out_dir: str | Path | None = None, *, log=print) -> list[Path]:
    """Rebuild every figure whose results exist (see `draw`); say which were skipped and why.
    Return the paths written."""
    written = []
    for name, (_, folders) in FIGURES.items():
        missing = [Path(results) / folder for folder in folders if not (Path(results) / folder).is_dir()]
        if missing:
            log(f"skip {name}: no results in {', '.join(map(str, missing))}")
            continue
        png = draw(name, results, out_dir)
        written += [png, png.with_suffix(".svg")]
        log(f"wrote {png}, .svg")
    return written


if __name__ == "__main__":
    make_figures()

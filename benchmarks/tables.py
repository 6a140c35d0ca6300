"""Every table of measured numbers in README.md and docs/*.md, generated from benchmarks/results/*.json.

    python benchmarks/tables.py            # rewrite every table between its markers
    python benchmarks/tables.py --check    # exit 1 listing the tables that differ from what this would write

A table sits between `<!-- table:NAME -->` and `<!-- /table -->` in a Markdown file; NAME is a key of TABLES,
which names the renderer (one per kind of result file) and the files it reads. Under each table a line names
the result files, the machine each ran on and its command, so no number is typed by hand and none can drift
from its result. Reads JSON only: no bintally import, no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"(<!-- table:([\w.-]+) -->\n)(.*?)(<!-- /table -->)", re.DOTALL)

# The one number not measured by bintally: the replaced system's own report (ResNet-34, frozen backbone, all of
# its 8,351 images, counts 1-5; DESIGN.md). Quoted, not measured, and labelled so in the table.
REPLACED_SYSTEM_ACCURACY_1_5 = 0.331


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def num(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def machine(result: dict) -> str:
    hw = result.get("hardware")
    if isinstance(hw, dict):
        return hw.get("described") or f"{hw['cpu']}, {hw['cores']} cores ({', '.join(f.upper() for f in hw['flags'])})"
    return hw or "machine not recorded"


def command(result: dict) -> str:
    if "command" in result:
        return result["command"]
    if "commands" in result:
        return "; ".join(result["commands"])
    settings = result.get("settings", {})
    if "json" in settings:  # train_speed.py records its settings, not its command line
        return f"python benchmarks/train_speed.py --json benchmarks/results/{Path(settings['json']).name}"
    return ""


def rows_table(head: list[str], rows: list[list[str]], right: int = 0) -> list[str]:
    """A Markdown table; the last `right` columns right-aligned."""
    align = ["---"] * (len(head) - right) + ["---:"] * right
    return ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |", *("| " + " | ".join(r) + " |" for r in rows)]


# --- renderers: each returns the table's lines for the result files it is given ---------------------------


def stored(files: list[str], field: str = "table") -> list[str]:
    """A result file that carries its own table (the script that wrote it rendered it)."""
    table = load(files[0])[field]
    return table.splitlines() if isinstance(table, str) else list(table)


def batch_targets(files: list[str]) -> list[str]:
    """decisions.py's policies over every bin of the drawn sets and batches: what each accepts, and how often a
    set or a batch has more of its accepted records wrong than the bound (a policy accepting none: "-")."""
    result = load(files[0])
    sizes = next(iter(result["by_batch_size"].values()), {})
    head = [
        "policy", "correct records flagged", "accepted per set", "wrong among accepted (first five sets)",
        "sets above the bound", *(f"batches of {int(n):,}" for n in sizes),
    ]  # fmt: skip

    def above(o: dict) -> str:
        return f"{o['draws_above_bound']:,} of {o['draws']:,}" if o["draws_accepting"] else "-"

    rows = []
    for name, by_range in result["drawn"].items():
        o, batches = by_range["all"], result["by_batch_size"].get(name, {})
        accepted = f"{o['accepted'] / o['draws']:.1f} ({o['accepted_share']:.1%})"
        first = ", ".join("-" if e is None else f"{e:.0%}" for e in o["accepted_error_first_draws"])
        shown = [pct(o["false_flags"]), accepted, f"{pct(o['accepted_error']) or '-'} ({first})", above(o)]
        rows.append([name, *shown, *(above(batches[n]) for n in sizes if n in batches)])
    return rows_table(head, rows, right=len(head) - 1)


def batch_formula(files: list[str]) -> list[str]:
    """decisions.py's bootstrap batches beside what the batch target's binomial sum (`reconcile.binomial`, computed
    by decisions.py) says of batches with the same share accepted and the same share of those wrong."""
    head = ["policy", "records per batch", "accepted per batch", "wrong among accepted", "batches above the bound", "binomial sum"]
    rows, seen = [], set()
    for name, by_size in load(files[0])["by_batch_size"].items():
        if (key := json.dumps(by_size, sort_keys=True)) in seen:
            continue  # a policy that decided every batch as one above did (a batch target already met): its rows again
        seen.add(key)
        for size, o in by_size.items():
            if o["accepted_error"] is None:
                continue
            computed = o["binomial_above"] * o["draws"]
            shown = [f"{o['accepted'] / o['draws']:.1f}", pct(o["accepted_error"]), f"{o['draws_above_bound']:,} of {o['draws']:,}"]
            rows.append([name, f"{int(size):,}", *shown, f"{computed:,.1f}"])
    return rows_table(head, rows, right=len(head) - 1)


def accuracy_runs(files: list[str], labels: list[str]) -> list[str]:
    """Runs of benchmarks/accuracy.py: validation (what chose the epoch) and the test split, scored once."""
    counts = ["1", "2", "3", "4", "5"]
    head = ["run", "val acc", "test acc", "+-1", "RMSE", "MAE", *(f"count {c}" for c in counts), "train min"]
    rows = []
    for name, label in zip(files, labels):
        row = load(name)["rows"][0]
        test = row.get("test") or {}
        per_count = [pct(test.get("per_count", {}).get(c)) for c in counts]
        scored = [pct(test.get("accuracy")), pct(test.get("within_one")), num(test.get("rmse")), num(test.get("mae"))]
        rows.append([label, pct(row["validation"]["accuracy"]), *scored, *per_count, f"{row['train_minutes']:.1f}"])
    return rows_table(head, rows, right=len(head) - 1)


def lever_screen(files: list[str], labels: list[str]) -> list[str]:
    """Validation-only runs of benchmarks/accuracy.py, one lever each (float32 validation, as served)."""
    head = ["run", "val acc", "val +-1", "val RMSE", "val acc under bf16", "train min"]
    rows = []
    for name, label in zip(files, labels):
        row = load(name)["rows"][0]
        v, bf16 = row["validation"], row.get("validation_bf16_autocast") or {}
        rows.append(
            [label, pct(v["accuracy"]), pct(v["within_one"]), num(v["rmse"]), pct(bf16.get("accuracy")), f"{row['train_minutes']:.1f}"]
        )
        if "validation_answering_1_5" in row:
            a = row["validation_answering_1_5"]
            rows.append([f"{label}, its answer restricted to 1-5", pct(a["accuracy"]), pct(a["within_one"]), num(a["rmse"]), "", ""])
    return rows_table(head, rows, right=5)


def learning_curve(files: list[str] | None = None, folder: Path = RESULTS) -> list[str]:
    """The default recipe's cpu-screen runs at 160 px (accuracy-cpu-screen-image-size160-*-best.json), by number of
    training photos: each seed's best validation epoch for the EMA (the kept model) and for the raw weights, then
    their means. Both come from the same run, so the raw column needs no runs of its own."""
    by_size: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("accuracy-cpu-screen-image-size160-*best.json")):
        result = json.loads(path.read_text())
        row, size = result["rows"][0], str(result["preset"].get("limit_train", "all"))
        raw = max(h["val_raw"]["accuracy"] for h in row["history"])
        by_size.setdefault(size, []).append(
            {"seed": result["preset"].get("seed", 0), "ema": row["validation"]["accuracy"], "raw": raw}
            | {k: row["validation"][k] for k in ("within_one", "rmse")}
        )
    rows = []
    for size, runs in sorted(by_size.items(), key=lambda item: float("inf") if item[0] == "all" else int(item[0])):
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("ema", "raw", "within_one", "rmse")}
        for seed, r in [*((str(r["seed"]), r) for r in sorted(runs, key=lambda r: r["seed"])), (f"mean of {len(runs)}", mean)]:
            rows.append([size, seed, pct(r["ema"]), pct(r["raw"]), pct(r["within_one"]), num(r["rmse"])])
    return rows_table(["training photos", "seed", "val acc (EMA)", "val acc (raw)", "val +-1", "val RMSE"], rows, right=5)


def input_size(files: list[str]) -> list[str]:
    """Runs that differ in input size: the kept epoch and every epoch's validation accuracy."""
    rows = []
    for name in files:
        result = load(name)
        row = result["rows"][0]
        v = row["validation"]
        epochs = ", ".join(pct(h["val"]["accuracy"]) for h in row["history"])
        rows.append([f"{result['preset']['image_size']} px", pct(v["accuracy"]), pct(v["within_one"]), num(v["rmse"])])
        rows[-1] += [str(row["best_epoch"]), epochs, f"{result['minutes']:.1f}"]
    head = ["input", "val acc", "val +-1", "val RMSE", "best epoch", "validation accuracy per epoch", "minutes"]
    return rows_table(head, rows, right=6)


def ema_epochs(files: list[str]) -> list[str]:
    """One run's EMA and raw weights, both scored on validation every epoch."""
    history = load(files[0])["rows"][0]["history"]
    rows = [[str(h["epoch"]), pct(h["val"]["accuracy"]), pct(h["val_raw"]["accuracy"])] for h in history]
    return rows_table(["epoch", "val acc, EMA", "val acc, raw weights"], rows, right=3)


def evaluation(files: list[str], labels: list[str]) -> list[str]:
    """`bintally evaluate` reports (counts 1-5), the trivial answer of the first beside them."""
    counts = ["1", "2", "3", "4", "5"]
    head = ["model", "accuracy", "+-1", "RMSE", "MAE", *(f"count {c}" for c in counts)]
    rows = []
    for name, label in zip(files, labels):
        m = load(name)["metrics"]
        per_count = [pct(m["per_count"].get(c)) for c in counts]
        rows.append([label, pct(m["accuracy"]), pct(m["within_one"]), num(m["rmse"]), num(m["mae"]), *per_count])
    b = load(files[0])["metrics"]["baseline"]
    rows.append([f"always {b['answer']} (the trivial answer)", pct(b["accuracy"]), pct(b["within_one"])])
    rows[-1] += [num(b["rmse"]), num(b["mae"])] + [""] * len(counts)
    return rows_table(head, rows, right=len(head) - 1)


def by_range(metrics: dict) -> list[str]:
    """Metrics with `ranges` (a whole-range evaluation), beside the trivial answer's."""
    b = metrics["baseline"]
    rows = [["every bin", str(metrics["n"]), pct(metrics["accuracy"]), pct(metrics["within_one"]), num(metrics["rmse"])]]
    rows[0] += [pct(b["accuracy"]), pct(b["within_one"]), num(b["rmse"])]
    for name, r in metrics["ranges"].items():
        t = b["ranges"][name]
        rows.append([name, str(r["n"]), pct(r["accuracy"]), pct(r["within_one"]), num(r["rmse"]), pct(t["accuracy"]), pct(t["within_one"])])
        rows[-1].append(num(t["rmse"]))
    if "small_counts_only" in metrics:
        s, t = metrics["small_counts_only"], b["ranges"].get("1-5", {})  # a constant answers 1-5 bins as it answers them
        rows.append(["1-5, answered among 1-5", str(s["n"]), pct(s["accuracy"]), pct(s["within_one"]), num(s["rmse"])])
        rows[-1] += [pct(t.get("accuracy")), pct(t.get("within_one")), num(t.get("rmse"))]
    head = ["recorded count", "bins", "exact", "+-1", "RMSE", f"always {b['label']}: exact", "+-1", "RMSE"]
    return rows_table(head, rows, right=7)


def whole_range(files: list[str]) -> list[str]:
    result = load(files[0])
    lines = by_range(result["metrics"])
    if "more_than_5_auc" in result["metrics"]:
        lines += ["", f'"More than 5" told from "5 or fewer" (AUC): {result["metrics"]["more_than_5_auc"]:.3f}.']
    return lines


def quickstart_whole_range(files: list[str]) -> list[str]:
    """The quickstart's whole-range run, where its result file exists (written by the quickstart's benchmark run)."""
    if not (RESULTS / files[0]).exists():
        return [f"Not measured yet: this table appears when `benchmarks/results/{files[0]}` does."]
    result = load(files[0])
    metrics = result.get("metrics", result)
    lines = by_range(metrics) if "ranges" in metrics else stored(files)
    wall = result.get("wall_s", result.get("seconds"))
    if wall is not None:
        lines += ["", f"Wall time: {int(wall) // 60} min {int(wall) % 60} s."]
    return lines


def train_speed(files: list[str]) -> list[str]:
    rows = load(files[0])["rows"]
    fp32 = next(r["images_per_s"] for r in rows if r["precision"] == "fp32" and not r["channels_last"])
    body = [
        [r["precision"], "yes" if r["channels_last"] else "no", f"{r['images_per_s']:.1f}", f"{r['images_per_s'] / fp32:.2f}x"]
        for r in rows
    ]
    return rows_table(["precision", "channels_last", "images/s", "vs fp32"], body, right=2)


PATHS = {
    "torch eager": "PyTorch eager (the original's path)",
    "onnxruntime fp32": "ONNX Runtime fp32",
    "onnxruntime int8": "ONNX Runtime int8",
    "served path fp32": "served path fp32",
    "served path int8": "served path int8",
}


def inference(files: list[str]) -> list[str]:
    result = load(files[0])
    rate = {(r["path"], r["batch"]): r["images_per_s"] for r in result["rows"]}
    rows = []
    for r in result["rows"]:
        ratio = ""
        if r["path"].endswith("int8") and (r["path"][:-4] + "fp32", r["batch"]) in rate:
            ratio = f"{r['images_per_s'] / rate[(r['path'][:-4] + 'fp32', r['batch'])]:.2f}x"
        rows.append([PATHS.get(r["path"], r["path"]), str(r["batch"]), f"{r['images_per_s']:.1f}", ratio, pct(r["share_of_peak"])])
    lines = rows_table(["path", "batch", "images/s", "int8 / fp32", "% of fp32 matmul peak"], rows, right=4)
    return lines + [
        "",
        f"Measured fp32 matmul peak: {result['matmul_peak_gflops']:.0f} GFLOP/s; model {result['model_gflops']:.3f} GFLOPs per photo.",
    ]


def serving_load(files: list[str]) -> list[str]:
    result = load(files[0])
    rows = [
        [str(r["clients"]), r["server"], f"{r['rps']:.1f}"]
        + [f"{r[k]:.0f}" if r.get(k) is not None else "" for k in ("p50_ms", "p95_ms", "p99_ms")]
        + [str(r["errors"])]
        for r in result["rows"]
    ]
    lines = rows_table(["clients", "server", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows, right=5)
    generator = result.get("load_generator", "a Python client (httpx on asyncio) sharing the cores").split(" Copyright")[0]
    return lines + ["", f"{result['seconds_per_level']:.0f} s per level, medians of {result['repeats']} repeats; load from {generator}."]


def predict_scale(files: list[str]) -> list[str]:
    result = load(files[0])
    rows = [
        [r["path"], f"{r['seconds']:.1f}", f"{r['steady_photos_per_s']:.1f}", f"+{r['overhead_ms_per_photo']:.2f}"] for r in result["rows"]
    ]
    lines = rows_table(["path", "whole call s", "steady photos/s", "Ray overhead ms/photo"], rows, right=3)
    lines += ["", f"{result['photos']} photos, {result['precision']}, medians of {result['repeats']} repeats; starting a local Ray took "]
    lines[-1] += f"{result['ray_start_s']:.1f} s more, once; {result['photos_per_s_per_core']:.1f} photos/s per core."
    return lines


def input_pipeline(files: list[str]) -> list[str]:
    """benchmarks/input_pipeline.py: photos per CPU-second (one process, one thread) by source and input size."""
    result = load(files[0])
    sizes = sorted({r["image_size"] for r in result["rows"]})
    sources_ = list(dict.fromkeys(r["source"] for r in result["rows"]))
    rate = {(r["source"], r["image_size"]): r["photos_per_cpu_second"] for r in result["rows"]}
    rows = [[source, *(f"{rate[source, size]:.0f}" for size in sizes)] for source in sources_]
    return rows_table(["source", *(f"{size} px" for size in sizes)], rows, right=len(sizes))


def gpu_rate(files: list[str]) -> list[str]:
    """benchmarks/device_train.sh on a lent GPU: the gpu recipe from shards, and the GPU alone."""
    r = load(files[0])
    per_core = r["photos_per_s_from_shards"] / r["loader_workers"]
    rows = [
        [f"from shards, {r['loader_workers']} loader workers", f"{r['photos_per_s_from_shards']:,.0f}", f"{per_core:.0f}"],
        ["the GPU alone (a batch already on it)", f"{r['photos_per_s_gpu_alone']:,.0f}", ""],
    ]
    lines = rows_table(["gpu recipe (288 px, batch 64, bf16)", "photos/s", "photos/s per loader worker"], rows, right=2)
    need = r["photos_per_s_gpu_alone"] / per_core
    return [*lines, "", f"Cores to keep the GPU busy at that machine's per-worker rate: ~{need:.0f}. {r['note']}."]


def runtimes(files: list[str]) -> list[str]:
    result = load(files[0])
    rows = [[key.split(" ")[0], key.split(" ")[1], f"{rate:.1f}"] for key, rate in result["images_per_s"].items()]
    lines = rows_table(["runtime", "graph", f"images/s at batch {result['batch']}"], rows, right=1)
    return lines + ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + "."]


VARIANTS = {
    "all": "every layer int8 (the export's graph then)",
    "no-bias-correction": "every layer int8, biases not corrected",
    "8-bit-weights": "8-bit weights, biases corrected",
    "depthwise-fp32": "depthwise convolutions float32",
    "head-fp32": "pooling and count layer float32",
    "entropy": "Entropy ranges",
    "percentile": "Percentile ranges",
}


def interval(r: dict) -> str:
    low, high = r.get("accuracy_difference_interval") or (None, None)
    return "" if low is None else f"{low * 100:+.1f} to {high * 100:+.1f}"


def int8_variants(files: list[str]) -> list[str]:
    result = load(files[0])
    rows = [
        [VARIANTS.get(r["variant"], r["variant"]), pct(r["agreement"]), pct(r["accuracy_int8"]), pct(r["accuracy_fp32"]), interval(r)]
        + [f"{r['images_per_s']:.1f}", f"{r['speedup']:.2f}x"]
        for r in result["rows"]
    ]
    head = [
        "variant",
        "same count as fp32",
        "accuracy",
        "fp32 accuracy",
        "int8 - fp32, 95% interval (points)",
        "images/s at batch 32",
        "vs fp32",
    ]
    return rows_table(head, rows, right=6) + ["", f"{result['photos']} {result['split']} photos of `{result['model']}`."]


def int8_kernels(files: list[str]) -> list[str]:
    """The same variants with this CPU's own int8 kernels (first file) and under benchmarks/avx2_only.sh (second)."""
    own, avx2 = ({r["variant"]: r for r in load(f)["rows"]} for f in files)
    rows = [
        [VARIANTS.get(v, v), pct(r["agreement"]), pct(r["accuracy_int8"]), pct(avx2[v]["agreement"]), pct(avx2[v]["accuracy_int8"])]
        + [f"{r['speedup']:.2f}x / {avx2[v]['speedup']:.2f}x"]
        for v, r in own.items()
        if v in avx2
    ]
    head = [
        "int8 graph",
        "same count as fp32, own kernels",
        "accuracy",
        "same count, AVX2 kernels",
        "accuracy",
        "speed vs fp32, own / AVX2",
    ]
    fp32 = next(iter(own.values()))["accuracy_fp32"]
    return rows_table(head, rows, right=5) + ["", f"fp32 scores {pct(fp32)} on these photos."]


def precision(files: list[str], labels: list[str]) -> list[str]:
    """benchmarks/precision.py: fp32 (from the first file) and each file's int8 graph on the same split."""
    head = ["precision", "accuracy", "+-1", "RMSE", "MAE", "same count as fp32", "int8 - fp32, 95% interval (points)"]
    first = load(files[0])["metrics"]["fp32"]
    rows = [["fp32", pct(first["accuracy"]), pct(first["within_one"]), num(first["rmse"]), num(first["mae"]), "", ""]]
    for name, label in zip(files, labels):
        result = load(name)
        m, diff = result["metrics"]["int8"], result.get("accuracy_difference")
        span = "" if not diff else f"{diff[1] * 100:+.1f} to {diff[2] * 100:+.1f}"
        rows.append([label, pct(m["accuracy"]), pct(m["within_one"]), num(m["rmse"]), num(m["mae"]), pct(result["agreement"]), span])
    bins = load(files[0])
    return rows_table(head, rows, right=6) + ["", f"{bins['bins']} {bins['split']} bins."]


def tune_trials(files: list[str]) -> list[str]:
    result = load(files[0])
    names = list(result["trials"][0]["params"])
    rows = []
    for t in result["trials"]:
        params = [f"{t['params'][k]:.3g}" if isinstance(t["params"].get(k), float) else str(t["params"].get(k, "")) for k in names]
        rows.append([str(t["number"]), t["state"], pct(t["value"]), str(t["epochs"]), *params, f"{t['seconds'] / 60:.1f}"])
    return rows_table(["trial", "state", "val acc", "epochs", *names, "minutes"], rows, right=len(names) + 3)


def headline(files: list[str]) -> list[str]:
    """README: the default model beside the trivial answer and the replaced system, its decisions, photos/s."""
    evaluated, decided, speed = (load(f) for f in files[:3])
    earlier = load(files[3])["rows"][0]["test"]
    m, b = evaluated["metrics"], evaluated["metrics"]["baseline"]
    s = m["small_counts_only"]
    fitted = decided["outcomes"]["fitted on validation"]
    rate = {(r["path"], r["batch"]): r["images_per_s"] for r in speed["rows"]}
    serve_cpu = speed["hardware"].split(",")[0] + (" with AMX" if "AMX" in speed["hardware"] else "") + ", 2 cores"
    rows = [
        ["default model, every count (0-9, 10+): exact / +-1 / RMSE", f"{pct(m['accuracy'])} / {pct(m['within_one'])} / {num(m['rmse'])}"],
        [f"always answering {b['label']}, the same bins", f"{pct(b['accuracy'])} / {pct(b['within_one'])} / {num(b['rmse'])}"],
        ["default model on counts 1-5, answered among 1-5", f"{pct(s['accuracy'])} / {pct(s['within_one'])} / {num(s['rmse'])}"],
        ["the earlier 1-5 model, same bins", f"{pct(earlier['accuracy'])} / {pct(earlier['within_one'])} / {num(earlier['rmse'])}"],
        ["the replaced system on counts 1-5 (its own report, not measured here)", f"{pct(REPLACED_SYSTEM_ACCURACY_1_5)} exact"],
        [
            "records accepted without a look / sent to a person / flagged as mismatches",
            f"{pct(fitted['accepted'])} / {pct(fitted['review'])} / {pct(fitted['flagged'])}",
        ],
        ["accepted records that are wrong (promise: at most 5%)", pct(fitted["accepted_error"])],
        ["correct records flagged as mismatches (promise: at most 5%)", pct(fitted["false_flags"])],
    ]
    if decided.get("drawn"):  # record sets of the test bins drawn one by one: how often one passes the bound
        d = decided["drawn"]["as fitted"]["all"]
        what = f"drawn sets of {d['records'] // d['draws']:,} records with over {d['bound']:.0%} of the accepted ones wrong"
        rows.append([what, f"{d['draws_above_bound']:,} of {d['draws_accepting']:,}"])
        steady = [(int(size), o) for size, o in decided.get("by_batch_size", {}).get("as fitted", {}).items()]
        steady = [(size, o) for size, o in steady if o["draws_accepting"] and o["draws_above_bound"] <= 0.05 * o["draws_accepting"]]
        if steady:  # the smallest batch in which at most 1 in 20 passes the bound
            size, o = min(steady, key=lambda item: item[0])
            rows.append(
                [
                    f"batches of {size:,} records (drawn from the same bins) with over {o['bound']:.0%} wrong",
                    f"{o['draws_above_bound']:,} of {o['draws_accepting']:,}",
                ]
            )
    rows += [
        [
            f"photos/s, ONNX Runtime fp32 / int8, the default's network (Lite0, 224 px), batch 32 ({serve_cpu})",
            f"{rate[('onnxruntime fp32', 32)]:.0f} / {rate[('onnxruntime int8', 32)]:.0f}",
        ],
    ]
    return rows_table(["what", "measured"], rows, right=1)


Renderer = Callable[..., list[str]]
SCREEN = {
    "accuracy-cpu-screen-best.json": "best (the baseline)",
    "accuracy-cpu-screen-best-warmup.json": "1 epoch of linear warm-up (`--warmup-epochs 1`)",
    "accuracy-cpu-screen-best-augment-1.5.json": "count-safe augmentation x1.5",
    "accuracy-cpu-screen-best-augment-0.5.json": "count-safe augmentation x0.5",
    "accuracy-cpu-screen-best-extra-counts.json": "+ the 1,779 training bins of counts 0 and 6-10 as more classes",
    "accuracy-cpu-screen-best-lite1.json": "EfficientNet-Lite1",
    "accuracy-cpu-screen-best-lite2.json": "EfficientNet-Lite2",
    "accuracy-cpu-screen-best-sigma-1.0.json": "ordinal sigma 1.0 (then default 0.7)",
    "accuracy-cpu-screen-best-sigma-0.5.json": "ordinal sigma 0.5",
    "accuracy-cpu-screen-best-aux-volume.json": "+ summed item volume as an auxiliary target",
    "accuracy-cpu-screen-best-aux-weight.json": "+ summed item weight as an auxiliary target",
    "accuracy-cpu-screen-best-classify-smoothing-0.1.json": "classification, label smoothing 0.1",
    "accuracy-cpu-screen-image-size288-best.json": "288 px instead of 160",
    "accuracy-cpu-screen-limit-train1132-best.json": "a seeded quarter of the photos (1,132)",
    "accuracy-cpu-screen-limit-train2264-best.json": "a seeded half (2,264)",
    "accuracy-cpu-screen-seed1-best.json": "the baseline, `--seed 1`",
    "accuracy-cpu-screen-seed0-best.json": "the baseline rerun, float32 validation throughout",
    "accuracy-cpu-screen-seed0-best-tuned.json": "the tuned recipe (the search's best trial), seed 0",
    "accuracy-cpu-screen-seed1-best-tuned.json": "the tuned recipe, seed 1",
}
INPUT_SIZES = [f"accuracy-cpu-screen-image-size{s}-limit-train1132-seed0-best.json" for s in (160, 224, 256, 320)]
EMA_1_5 = "accuracy-cpu-full-image-size224-epochs10-best-ema.json"
# The default model of the README: the default recipe trained on 2 CPU cores (the H200 run's files keep their tables).
DEFAULT_EVALUATED, DEFAULT_DECIDED = "evaluate-cpu-default-whole-range-test.json", "decisions-cpu-default-whole-range.json"

# marker -> (renderer, result files, keyword arguments)
TABLES: dict[str, tuple[Renderer, list[str], dict]] = {
    "headline": (
        headline,
        [DEFAULT_EVALUATED, DEFAULT_DECIDED, "inference-intel-xeon-amx-7bit.json", EMA_1_5],
        {},
    ),
    "whole-range": (whole_range, [DEFAULT_EVALUATED], {}),
    "whole-range-h200": (whole_range, ["evaluate-default-whole-range-test.json"], {}),
    "top-class": (stored, ["top-class-val.json"], {}),
    "quickstart-whole-range": (quickstart_whole_range, ["quickstart-whole-range.json"], {}),
    "accuracy-default": (accuracy_runs, ["accuracy-cpu-default-best.json"], {"labels": ["the tuned default, 224 px, 10 epochs"]}),
    "accuracy-earlier-ema": (accuracy_runs, [EMA_1_5], {"labels": ["the earlier default with an EMA, 224 px, 10 epochs"]}),
    "accuracy-flips": (
        evaluation,
        ["evaluate-best-ema-flips-test.json"],
        {"labels": ["the earlier default with an EMA, + top-bottom flip"]},
    ),
    "lever-screen": (lever_screen, list(SCREEN), {"labels": list(SCREEN.values())}),
    "ema-epochs": (ema_epochs, ["accuracy-cpu-default-seed1-best-ema.json"], {}),
    "combined-levers": (
        lever_screen,
        ["accuracy-cpu-default-best-warmup-augment-1.5.json"],
        {"labels": ["warm-up + augmentation x1.5, 224 px, 10 epochs, fp32"]},
    ),
    "input-size": (input_size, INPUT_SIZES, {}),
    "learning-curve": (learning_curve, ["accuracy-cpu-screen-image-size160-*-best.json"], {}),
    "tune-trials": (tune_trials, ["tune-cpu-screen.json"], {}),
    "tta-earlier": (stored, ["tta-best-ema-val.json"], {}),
    "tta-default": (stored, ["tta-cpu-default-best-val.json"], {}),
    "ensemble-screen": (stored, ["ensemble-cpu-screen-five-val.json"], {}),
    "ensemble-val": (stored, ["ensemble-cpu-default-three-val.json"], {}),
    "ensemble-two": (stored, ["ensemble-cpu-default-two-val.json"], {}),
    "ensemble-test": (stored, ["ensemble-cpu-default-three-test.json"], {}),
    "separability": (stored, ["count-separability-val.json"], {}),
    "eye-count": (stored, ["eye-count-val-seed7.json"], {}),
    "train-speed-epyc": (train_speed, ["train-speed-224px.json"], {}),
    "train-speed-xeon": (train_speed, ["train-speed-224px-intel-xeon.json"], {}),
    "train-speed-xeon-amx": (train_speed, ["train-speed-224px-intel-xeon-amx.json"], {}),
    "inference-xeon-amx": (inference, ["inference-intel-xeon-amx.json"], {}),
    "inference-xeon-amx-7bit": (inference, ["inference-intel-xeon-amx-7bit.json"], {}),
    "inference-xeon": (inference, ["inference-intel-xeon.json"], {}),
    "inference-epyc": (inference, ["inference.json"], {}),
    "inference-avx2-only": (inference, ["inference-intel-xeon-avx2-only.json"], {}),
    "serving-xeon-amx": (serving_load, ["serving-load-intel-xeon-amx.json"], {}),
    "serving-epyc": (serving_load, ["serving-load.json"], {}),
    "serving-avx2-only": (serving_load, ["serving-load-intel-xeon-avx2-only.json"], {}),
    "runtimes": (runtimes, ["runtimes.json"], {}),
    "int8-variants-default": (int8_variants, ["int8-variants-cpu-default-best-val.json"], {}),
    "int8-variants-smoothing": (int8_variants, ["int8-variants-cpu-screen-best-classify-smoothing-0.1-val.json"], {}),
    "int8-variants-tuned": (int8_variants, ["int8-variants-cpu-screen-seed1-best-tuned-val.json"], {}),
    "int8-variants-quickstart": (int8_variants, ["int8-variants-quickstart-val.json"], {}),
    "int8-variants-warmup": (int8_variants, ["int8-variants-best-warmup-augment-1.5-val.json"], {}),
    "int8-kernels": (
        int8_kernels,
        ["int8-variants-cpu-default-best-weight-bits-val.json", "int8-variants-cpu-default-best-avx2-only-val.json"],
        {},
    ),
    "precision-default": (
        precision,
        [
            "precision-cpu-default-best-test.json",
            "precision-cpu-default-best-corrected-test.json",
            "precision-cpu-default-best-7bit-test.json",
        ],
        {
            "labels": [
                "int8, 8-bit weights, no bias correction",
                "int8, 8-bit weights, biases corrected",
                "int8, 7-bit weights (the default)",
            ]
        },
    ),
    "precision-7bit-avx2-only": (
        precision,
        ["precision-cpu-default-best-7bit-avx2-only-test.json"],
        {"labels": ["int8, 7-bit weights, AVX2 kernels"]},
    ),
    "precision-earlier": (precision, ["precision-best-ema-test.json"], {"labels": ["int8"]}),
    "precision-aux-weight": (
        precision,
        ["precision-cpu-screen-best-aux-weight-val.json", "precision-cpu-screen-best-aux-weight-test.json"],
        {"labels": ["int8, validation (574 bins)", "int8, test (527 bins; fp32 row above is validation's)"]},
    ),
    "predict-scale": (predict_scale, ["predict-scale.json"], {}),
    "input-pipeline": (input_pipeline, ["input-pipeline-intel-xeon.json"], {}),
    "gpu-rate": (gpu_rate, ["gpu-rate-h200.json"], {}),
    "shards-vs-files": (stored, ["shards-vs-files.json"], {}),
    "decisions-whole-range": (stored, [DEFAULT_DECIDED], {}),
    "decisions-whole-range-drawn": (stored, [DEFAULT_DECIDED], {"field": "drawn_table"}),
    "decisions-h200-summary": (batch_targets, ["decisions-default-whole-range.json"], {}),
    "decisions-quickstart-summary": (batch_targets, ["decisions-quickstart-whole-range.json"], {}),
    "decisions-cpu-default-summary": (batch_targets, [DEFAULT_DECIDED], {}),
    "decisions-batch-formula": (batch_formula, [DEFAULT_DECIDED], {}),
    "accept-ceiling": (stored, ["accept-ceiling-val.json"], {}),
    "accept-ceiling-cpu-default": (stored, ["accept-ceiling-cpu-default-val.json"], {}),
    "decisions-whole-range-batches": (stored, [DEFAULT_DECIDED], {"field": "batch_table"}),
    "decisions-earlier": (stored, ["decisions-best-ema-flips.json"], {}),
    "decisions-earlier-confidence50": (stored, ["decisions-best-ema-flips-confidence50.json"], {}),
}


def sources(files: list[str], doc: Path) -> str:
    """The line under a table: each result file (linked from the doc), its machine and its command."""
    parts, many = [], len(files) > 3
    for name in files:
        if "*" in name:
            found = sorted(RESULTS.glob(name))
            machines = sorted({machine(json.loads(p.read_text())) for p in found})
            parts.append(f"`benchmarks/results/{name}` ({len(found)} files; " + "; ".join(machines) + ")")
            continue
        if not (RESULTS / name).exists():
            continue
        result, link = load(name), os.path.relpath(RESULTS / name, doc.parent)
        when = f", {result['date']}" if "date" in result else ""
        parts.append(f"[`{name}`]({link}): {machine(result)}{when}" + ("" if many else f"; `{command(result)}`"))
    return "<sub>From " + " · ".join(parts) + "</sub>" if parts else ""


def render(name: str, doc: Path) -> str:
    renderer, files, options = TABLES[name]
    lines = renderer(files, **options)
    source = sources(files, doc)
    return "\n".join([*lines, *(["", source] if source else [])]) + "\n"


def rewrite(text: str, doc: Path) -> str:
    def table(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"{doc.relative_to(ROOT)}: no table named {name!r} in benchmarks/tables.py")
        return match.group(1) + render(name, doc) + match.group(4)

    return MARKER.sub(table, text)


def stale(docs: list[Path] = DOCS) -> list[str]:
    """The tables (doc: name) whose text differs from what this script writes today."""
    out = []
    for doc in docs:
        text = doc.read_text()
        for match in MARKER.finditer(text):
            if match.group(2) not in TABLES or match.group(3) != render(match.group(2), doc):
                out.append(f"{doc.relative_to(ROOT)}: {match.group(2)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 listing stale tables; write nothing")
    args = parser.parse_args()
    if args.check:
        old = stale()
        for line in old:
            print(f"stale: {line}")
        sys.exit(1 if old else 0)
    for doc in DOCS:
        text = doc.read_text()
        new = rewrite(text, doc)
        if new != text:
            doc.write_text(new)
            print(f"wrote {doc.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

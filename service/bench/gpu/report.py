"""What the command writes: results.json (every figure, by stage), summary.md (the machine, the
targets met or not, a table per stage) beside log.txt, precision.png and profile.txt. Five files in
one folder: a device machine's output comes back as a few files at most."""

from __future__ import annotations

import json
import time
from typing import Any

from .command import Run, plan_dict
from .precision import PICTURE
from .profiling import TABLE
from .sampling import BUNDLED

LOG = "log.txt"
RESULTS = "results.json"
SUMMARY = "summary.md"
FILES = (RESULTS, SUMMARY, LOG, PICTURE, TABLE)

# (name, what is compared, the least ratio that meets it)
TARGETS = (
    ("sampling speed", "best images/s, ours (fastest form) over openai/vdvae's code in fp32", 5.0),
    ("batch-1 latency", "openai/vdvae's code in fp32 over ours (fastest form)", 5.0),
    ("arithmetic floor", "share of the bf16 floor at ours' best batch", 0.25),
    ("service", "images/s at the most clients over the model's own at the same batch", 0.8),
)


def write(run: Run, results: dict[str, dict], command: str, started: float) -> None:
    measured = targets(run, results)
    doc = {
        "command": command,
        "plan": plan_dict(run.plan),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "targets": measured,
        "stages": results,
    }
    (run.out / RESULTS).write_text(json.dumps(doc, indent=1, default=str))
    (run.out / SUMMARY).write_text(summary(run, doc))


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def targets(run: Run, results: dict[str, dict]) -> list[dict[str, Any]]:
    """Each target's measured ratio and whether it is met (None: not measured)."""
    rows = results.get("sampling", {}).get("rows", [])
    model = run.plan.presets[0]
    fastest = results.get("sampling", {}).get("fastest")
    ours = [
        r
        for r in rows
        if r["model"] == model and r["code"] == "ours" and r["form"] == fastest and "img_s" in r
    ]
    theirs = [r for r in rows if r["model"] == model and r["code"] == "openai/vdvae" and "img_s" in r]
    best_ours = max(ours, key=lambda r: r["img_s"], default=None)
    best_theirs = max((r["img_s"] for r in theirs), default=None)
    fast_1 = min(
        (
            r["latency_ms"]
            for r in rows
            if r["model"] == model
            and r["code"] == "ours"
            and r["form"] != "fp32"
            and r["batch"] == 1
            and "img_s" in r
        ),
        default=None,
    )
    theirs_1 = next((r["latency_ms"] for r in theirs if r["batch"] == 1), None)
    runs = results.get("service", {}).get("servers", {}).get(f"max_batch_size={run.plan.service_batch}", {})
    last = (runs.get("runs") or [{}])[-1]
    values = (
        _ratio(best_ours and best_ours["img_s"], best_theirs),
        _ratio(theirs_1, fast_1),
        best_ours.get("floor_share") if best_ours else None,
        last.get("of_model"),
    )
    out = []
    for (name, what, goal), value, of in zip(TARGETS, values, (model, model, model, BUNDLED)):
        met = None if value is None or run.device.type != "cuda" else value >= goal
        out.append({"target": name, "what": f"{what} ({of})", "goal": goal, "measured": value, "met": met})
    return out


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary(run: Run, doc: dict[str, Any]) -> str:
    stages, env = doc["stages"], doc["stages"].get("environment", {})
    on_gpu = run.device.type == "cuda"
    parts = [
        f"# `vdvae bench gpu`: {env.get('device', run.plan.device)}",
        "",
        f"`{doc['command']}`, {doc['started']}, {doc['wall_s']} s.",
        "",
        f"Machine: {env.get('device')}, driver {env.get('driver')}, CUDA {env.get('cuda')}, cuDNN "
        f"{env.get('cudnn')}, torch {env.get('torch')}, Python {env.get('python')}, {env.get('cpus')} CPUs; "
        f"commit {env.get('commit')}. Ceilings measured: {env.get('ceilings')}.",
    ]
    if not on_gpu:
        parts += [
            "",
            "**A dry run on the CPU: every stage ran at tiny sizes to test the command. No figure "
            "below is a GPU figure: autocast, CUDA graphs and compilation are CUDA's (off or not "
            "captured here), the targets need a GPU, and the floor is this CPU's float32 rate.**",
        ]
    if env.get("missing_packages"):
        parts += ["", f"Missing Python packages: {', '.join(env['missing_packages'])}."]
    parts += [
        "",
        "## Targets",
        "",
        _table(
            ["target", "measured", "goal", "met"],
            [
                [
                    f"{t['target']}: {t['what']}",
                    t["measured"],
                    f">= {t['goal']}",
                    {True: "yes", False: "**no**", None: "needs a GPU" if not on_gpu else "not measured"}[
                        t["met"]
                    ],
                ]
                for t in doc["targets"]
            ],
        ),
    ]
    parts += [
        "",
        "## Stages",
        "",
        _table(
            ["stage", "status", "seconds", "note"],
            [
                [n, s.get("status"), s.get("seconds"), s.get("error") or s.get("note")]
                for n, s in stages.items()
            ],
        ),
    ]
    parts += _tests(stages.get("tests", {})) + _precision(stages.get("precision", {}))
    parts += _service(stages.get("service", {})) + _sampling(stages.get("sampling", {}))
    parts += _profile(stages.get("profile", {}))
    return "\n".join(parts) + "\n"


def _tests(t: dict) -> list[str]:
    if "passed" not in t:
        return []
    skipped = "; ".join(f"{n} ({reason})" for reason, n in t["skipped"].items()) or "none"
    failed = ", ".join(t["failed"]) or "none"
    return [
        "",
        "## Tests",
        "",
        f"On {t['device']}: {t['passed']} passed, failed: {failed}; skipped: {skipped}.",
        f"`python {t['command']}`",
    ]


def _precision(p: dict) -> list[str]:
    rows = [
        [
            model,
            dtype,
            f["bits_per_dim"],
            f["bpd_mean_diff"],
            f["bpd_max_abs_diff"],
            f["nonfinite_bpd"],
            f["pixels_changed"],
            f["max_level_change"],
            sum(f["nonfinite_at_extremes"].values()),
        ]
        for model, by in p.items()
        if isinstance(by, dict)
        for dtype, f in by.items()
    ]
    if not rows:
        return []
    return [
        "",
        "## Precision",
        "",
        _table(
            [
                "model",
                "dtype",
                "bits/dim",
                "mean diff",
                "max abs diff",
                "non-finite",
                "pixels changed",
                "max level change",
                "non-finite at extremes",
            ],
            rows,
        ),
        "",
        f"Samples: {p.get('picture')}.",
    ]


def _sampling(s: dict) -> list[str]:
    if "rows" not in s:
        return []
    out = ["", "## Sampling", "", f"Fastest form: {s['fastest']} (best batch {s['best_batch']})."]
    for model, info in s["models"].items():
        rows = [
            [
                r["code"],
                r["form"],
                r["batch"],
                r.get("img_s"),
                r.get("latency_ms"),
                r.get("floor_share"),
                r.get("warmup_s"),
                r.get("status"),
            ]
            for r in s["rows"]
            if r["model"] == model
        ]
        out += [
            "",
            f"### {model}",
            "",
            _model_line(info),
            "",
            _table(
                ["code", "form", "batch", "img/s", "ms per call", "floor share", "warm-up s", "not measured"],
                rows,
            ),
        ]
    return out


def _model_line(info: dict) -> str:
    if "params" not in info:
        return str(info.get("note", info.get("status", "")))
    draws = ", ".join(f"{ms} ms on {n} thread(s)" for n, ms in info["draw_ms_per_image_by_threads"].items())
    parts = [
        f"{info['params']:,} parameters",
        f"{info['gflop_per_sample']} GFLOP per sample",
        f"floor {info['floor_img_s']} img/s",
        f"noise draws per image: {draws}",
    ]
    changes = info.get("pixels_against_fp32", {})
    parts += [
        "the same seeds' images against fp32: "
        + ", ".join(f"{form} {c.get('changed', c.get('failed'))}" for form, c in changes.items())
    ]
    parts += [info[k] for k in ("official", "theirs") if k in info]
    return "; ".join(parts) + "."


def _service(s: dict) -> list[str]:
    if "servers" not in s:
        return []
    rows = [
        [
            label,
            srv["startup_s"],
            r["concurrency"],
            round(r["ips"], 2),
            r.get("model_img_s"),
            r.get("of_model"),
            round(r["mean_batch"], 2),
            round(r["p50_ms"], 2),
            round(r["p99_ms"], 2),
            round(1000 * r["loop_cpu_s_per_request"], 3),
            sum(r["errors"].values()),
        ]
        for label, srv in s["servers"].items()
        for r in srv["runs"]
    ]
    return [
        "",
        "## Service",
        "",
        f"`python -m service {' '.join(s['flags'])}` ({s['form']}).",
        "",
        _table(
            [
                "server",
                "start to ready s",
                "clients",
                "img/s",
                "model img/s",
                "of model",
                "mean batch",
                "p50 ms",
                "p99 ms",
                "loop ms CPU/request",
                "errors",
            ],
            rows,
        ),
    ]


def _profile(p: dict) -> list[str]:
    if "top" not in p:
        return []
    rows = [[t["name"][:80], t["calls"], t["ms"], t["share"]] for t in p["top"]]
    busy = f"; device busy {p['device_busy_share']:.0%} of the wall time" if "device_busy_share" in p else ""
    return [
        "",
        "## Profile",
        "",
        f"{p['model']}, {p['form']}, batch {p['batch']}: {p['calls']} calls in "
        f"{p['wall_s']} s{busy} ({TABLE}).",
        "",
        _table(["op or kernel", "calls", "ms", "share"], rows),
    ]

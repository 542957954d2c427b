"""What the processes export, read from the source (every `Counter(`/`Gauge(`/`Histogram(` call),
and the metric names a PromQL expression uses — so alert rules and dashboards cannot name a
metric nobody exports."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_DECL = re.compile(r"\b(Counter|Gauge|Histogram|Summary|CounterMetricFamily|GaugeMetricFamily)\(\s*"
                   r"[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']")
# prometheus_client's process collector, and Prometheus's own series per scrape target
BUILTIN = {"up", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
           "process_start_time_seconds", "process_virtual_memory_bytes"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan", "Inf", "NaN"}


def exported() -> set[str]:
    names = set(BUILTIN)
    for path in [*ROOT.glob("minqing/**/*.py"), *ROOT.glob("services/**/*.py")]:
        for kind, name in _DECL.findall(path.read_text(encoding="utf-8")):
            names.add(name)
            if kind in ("Histogram", "Summary"):
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind in ("Counter", "CounterMetricFamily") and not name.endswith("_total"):
                names.add(f"{name}_total")
    return names


def names_in(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\b\d[\w.]*", "", text)                         # numbers, 1e3, durations
    out = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if m.group() in KEYWORDS or re.match(r"\s*\(", text[m.end():]):
            continue                                                   # a function or an aggregation
        out.add(m.group())
    return out

"""Policy decisions per second in process: the real ``policy.decide.place()`` on real inputs, single thread.

Policies: the lab's (``build_lab`` + ``load_config`` + ``config.segment_rules()``), and the same with ~50 rules
in front (sites, manufacturers, subject CN, MUD URL, NAS IP patterns; most do not match, so ``place`` walks the
list). Inputs: one ``PlacementInput`` per lab scenario, built as ``trustport/services/authorize.py`` builds them
(facts from the attribute tuple FreeRADIUS passes, ``validate_certificate`` + binding, the registry record, the
attestation gate, the MUD lookup), cycled. Baselines in the same run, same count: a loop calling a trivial
function, and a loop doing one dict lookup. Then the full in-process decision ``Authorizer.evaluate`` (deny
list, registry lookup, validation, placement; no decision-log write) on the real SQLite registry, and the same
with the registry and attestation reads answered from memory (the non-I/O part of it), and
``Authorizer.authorize`` (evaluate + the decision-log append) for completeness.

    .venv/bin/python bench/bench_decisions.py [-n 200000] [--auth-n 3000] [--json bench/results/decisions.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.radius_pairs

from cryptography import x509

from policy.decide import SegmentRules, place
from policy.errors import IdentityError
from policy.model import CertificateFacts, DeviceKey, DeviceRecord, NetworkContext, PlacementInput
from policy.x509facts import facts_from_certificate
from radius_hooks.attributes import facts_from_pairs, network_context, request_pairs
from tests.radius_pairs import freeradius_pairs
from trustport.app import build_authorizer
from trustport.services.authorize import Authorizer
from trustport.settings.config import load_config
from trustport_lab.lab import SCENARIOS, build_lab

RESULTS = Path(__file__).resolve().parent / "results" / "decisions.json"
TARGET_PER_S = 50_000
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def fifty_rules() -> dict[str, object]:
    """Sites and ~50 rules in the style of docs/policy.md, in front of what the lab places by lifecycle."""
    sites = {"campus": ["10.10.0.0/16", "wlc-campus-1"], "clinic": ["10.20.0.0/16", "clinic-sw-stack"],
             "lab": ["127.0.0.0/8"]}
    rules: list[dict[str, object]] = []
    for i in range(12):
        rules.append({"name": f"vendor-{i}-cameras", "match": {"manufacturer": f"Vendor{i}*", "cert_kind": "ldevid"},
                      "segment": "cameras"})
    for i in range(10):
        rules.append({"name": f"no-legacy-{i}-at-clinic",
                      "match": {"site": "clinic", "manufacturer": f"Legacy{i}*", "subject.CN": f"legacy-{i}-*"},
                      "reject": True})
    for i in range(10):
        rules.append({"name": f"mud-{i}", "match": {"mud_url": f"https://mud.vendor{i}.example/*"},
                      "segment": "restricted"})
    for i in range(8):
        rules.append({"name": f"nas-{i}", "match": {"nas_ip": f"10.{30 + i}.0.0/16", "cert_kind": "idevid"},
                      "segment": "restricted"})
    for i in range(6):
        rules.append({"name": f"class-{i}", "match": {"device_class": f"class-{i}", "owner": f"team-{i}"},
                      "segment": "production"})
    rules.append({"name": "onboard-acme", "match": {"manufacturer": "Nobody*", "state": ["unknown", "pending"]},
                  "segment": "onboarding"})
    rules.append({"name": "cn-pattern", "match": {"subject.CN": "*.cameras.example"}, "segment": "cameras"})
    rules.append({"name": "lab-site-idevid", "match": {"site": "lab", "cert_kind": "idevid", "state": "unknown"},
                  "segment": "quarantine"})
    rules.append({"name": "lab-production", "match": {"site": "lab", "cert_kind": "ldevid"},
                  "segment": "production"})
    return {"sites": sites, "policy": {"quarantine_segment": "quarantine", "default_segment": "production",
                                       "onboarding_segment": "onboarding", "rules": rules}}


class Lab:
    """The lab's PKI, config and registry (no radiusd, no API server, no attestation tokens posted)."""

    def __init__(self, work: Path, extra: dict[str, object] | None = None) -> None:
        self.work = work
        self.config_path, self.devices, self.cas = build_lab(work, NOW, extra)
        self.config = load_config(self.config_path)

    def certificate(self, serial: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.devices[serial][0].read_bytes())

    def populate(self, authorizer: Authorizer) -> None:
        for scenario in SCENARIOS:
            if scenario.registry_state is not None:
                facts = facts_from_certificate(self.certificate(scenario.serial))
                authorizer.store.add_device(
                    DeviceKey(facts.issuer, scenario.serial), state=scenario.registry_state, now=NOW,
                    segment=scenario.segment, owner="lab", facts=facts)

    def requests(self) -> list[tuple[CertificateFacts, NetworkContext]]:
        out: list[tuple[CertificateFacts, NetworkContext]] = []
        for scenario in SCENARIOS:
            issuer = self.cas[scenario.issuer].cert
            try:
                raw = freeradius_pairs(self.certificate(scenario.serial), issuer,
                                       mac=f"02-00-00-00-{len(out) // 256:02x}-{len(out) % 256:02x}")
                pairs = request_pairs({"request": raw})
                out.append((facts_from_pairs(pairs), network_context(pairs)))
            except (ValueError, IdentityError):  # the hook refuses it before any decision: not an input
                continue
        return out


def placement_inputs(authorizer: Authorizer, requests: Sequence[tuple[CertificateFacts, NetworkContext]],
                     ) -> list[PlacementInput]:
    """What ``Authorizer.evaluate`` hands to ``place``, for every request."""
    from policy.certificates import check_binding, validate_certificate
    from trustport.services.authorize import device_key

    inputs = []
    for facts, context in requests:
        key = device_key(facts)
        device = authorizer.store.find_device(key) if key is not None else None
        binding = check_binding(facts, device, authorizer.trust.anchors)
        verdict = validate_certificate(facts, authorizer.trust.anchors, authorizer.trust.crls, NOW,
                                       authorizer.settings.revocation, (binding,))
        inputs.append(authorizer.placement.for_authentication(facts, verdict, device, context, NOW))
    return inputs


def rate(fn: Callable[[int], object], n: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` calls per second of ``fn(n)`` (which runs n iterations)."""
    fn(min(n, 1000))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def decide_loop(inputs: Sequence[PlacementInput], rules: SegmentRules) -> Callable[[int], object]:
    count = len(inputs)

    def run(n: int) -> object:
        last = None
        for i in range(n):
            last = place(inputs[i % count], rules)
        return last
    return run


def baseline_call(inputs: Sequence[PlacementInput]) -> Callable[[int], object]:
    count = len(inputs)

    def trivial(inputs: PlacementInput, rules: object) -> PlacementInput:
        return inputs

    def run(n: int) -> object:
        last = None
        for i in range(n):
            last = trivial(inputs[i % count], None)
        return last
    return run


def baseline_dict(inputs: Sequence[PlacementInput]) -> Callable[[int], object]:
    count = len(inputs)
    table = dict(enumerate(inputs))

    def run(n: int) -> object:
        last = None
        for i in range(n):
            last = table[i % count]
        return last
    return run


class MemoryStore:
    """The registry reads of one authentication answered from dicts filled beforehand (no I/O)."""

    def __init__(self, devices: dict[DeviceKey, DeviceRecord]) -> None:
        self.devices = devices

    def find_device(self, key: DeviceKey) -> DeviceRecord | None:
        return self.devices.get(key)


class MemoryAttestations:
    def __init__(self, latest: dict[int, Any]) -> None:
        self.latest = latest

    def latest_accepted(self, device_id: int) -> Any:
        return self.latest.get(device_id)


def per_call_us(fn: Callable[[int], object], count: int, n: int) -> dict[str, float]:
    for i in range(min(100, n)):
        fn(i % count)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i % count)
        samples.append((time.perf_counter() - start) * 1e6)
    ordered = sorted(samples)
    return {"median_us": round(statistics.median(ordered), 2),
            "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
            "per_s": round(1e6 / statistics.mean(ordered))}


def bench_policy(name: str, work: Path, extra: dict[str, object] | None, n: int, auth_n: int) -> dict[str, Any]:
    lab = Lab(work, extra)
    settings = lab.config.hook_settings()
    from trustport.store.sql import SqlDeviceStore

    authorizer = build_authorizer(settings, SqlDeviceStore(settings.database_url, create=True))
    try:
        lab.populate(authorizer)
        rules = lab.config.segment_rules()
        requests = lab.requests()
        inputs = placement_inputs(authorizer, requests)
        outcomes = sorted({f"{d.outcome.value}:{d.segment}" for d in (place(i, rules) for i in inputs)})
        result: dict[str, Any] = {
            "rules": len(rules.rules), "inputs": len(inputs), "outcomes": outcomes, "n": n,
            "decisions_per_s": round(rate(decide_loop(inputs, rules), n)),
            "baseline_call_per_s": round(rate(baseline_call(inputs), n)),
            "baseline_dict_per_s": round(rate(baseline_dict(inputs), n)),
        }
        # the full in-process decision, real SQLite registry (deny list cached for 5 s, as in the hook)
        result["evaluate_sqlite"] = per_call_us(
            lambda i: authorizer.evaluate(requests[i][0], NOW, context=requests[i][1]), len(requests), auth_n)
        # the same, registry and attestation reads from memory: what evaluate costs without I/O
        devices = {inp.device.key: inp.device for inp in inputs if inp.device is not None}
        memory = build_authorizer(settings, authorizer.store)  # type: ignore[arg-type]
        memory.store = MemoryStore(devices)  # type: ignore[assignment]
        index = _deny(authorizer)
        memory.deny_list = lambda issuer, serial: index.get((issuer, serial.lower()))
        if memory.attestation is not None:
            gate = memory.attestation
            latest = {d.id: gate.store.latest_accepted(d.id) for d in devices.values()}
            gate.store = MemoryAttestations(latest)  # type: ignore[assignment]
        result["evaluate_memory"] = per_call_us(
            lambda i: memory.evaluate(requests[i][0], NOW, context=requests[i][1]), len(requests), auth_n)
        result["authorize_sqlite"] = per_call_us(
            lambda i: authorizer.authorize(requests[i][0], requests[i][1], NOW), len(requests), auth_n)
        rps = result["decisions_per_s"]
        print(f"{name}: {len(rules.rules)} rules, {len(inputs)} distinct inputs ({', '.join(outcomes)})")
        print(f"  place()                        {rps:>12,.0f} decisions/s   ({1e6 / rps:.2f} us each)")
        print(f"  baseline: trivial call loop    {result['baseline_call_per_s']:>12,.0f} calls/s")
        print(f"  baseline: dict lookup loop     {result['baseline_dict_per_s']:>12,.0f} lookups/s")
        for key, label in (("evaluate_memory", "evaluate, registry in memory"),
                           ("evaluate_sqlite", "evaluate, SQLite registry"),
                           ("authorize_sqlite", "authorize (+ decision log)")):
            r = result[key]
            print(f"  {label:<30} median {r['median_us']:8.1f} us  p99 {r['p99_us']:8.1f} us  "
                  f"({r['per_s']:,.0f}/s)")
        return result
    finally:
        authorizer.store.close()


def _deny(authorizer: Authorizer) -> dict[tuple[str, str], str]:
    from trustport.store.lifecycle import SqlLifecycleStore

    return SqlLifecycleStore(authorizer.store).denied_index()  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="decisions per timed loop (best of 5)")
    parser.add_argument("--auth-n", type=int, default=3000, help="calls of evaluate / authorize")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"raw results ({RESULTS})")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trustport-bench-") as tmp:
        for name, extra in (("lab policy", None), ("50-rule policy", fifty_rules())):
            work = Path(tmp) / name.replace(" ", "-")
            work.mkdir()
            results[name.replace(" ", "_").replace("-", "_")] = bench_policy(name, work, extra, args.n, args.auth_n)
    worst = min(r["decisions_per_s"] for r in results.values())
    verdict = "met" if worst >= TARGET_PER_S else "NOT met"
    print(f"target >= {TARGET_PER_S:,} decisions/s: {verdict} (slowest policy {worst:,.0f}/s)")
    out = {"bench": "decisions", "time": datetime.now(UTC).isoformat(), "host": platform.node(),
           "python": platform.python_version(), "seconds": round(time.perf_counter() - started, 1),
           "target_decisions_per_s": TARGET_PER_S, "policies": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"raw results: {args.json}")


if __name__ == "__main__":
    main()

"""One EAP-TLS authentication with and without the trustport hook, same machine, same run.

Both FreeRADIUS servers are rendered from the same lab config; the baseline's check-eap-tls sets the VLAN in
unlang instead of calling python3. Runs alternate in blocks so drift hits both sides alike. eapol_test's own
process start is part of every figure (it is the same on both sides).

    .venv/bin/python bench/bench_eap_tls.py [--runs 300] [--block 25] [--json bench/results/eap_tls.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.radius_pairs

from radius_hooks.hook import Hook
from trustport.freeradius.run import RadiusServer, free_port
from trustport_lab.lab import Lab

BASELINE_CHECK = """server check-eap-tls {
	authorize {
		update config {
			&Auth-Type := Accept
		}
		update reply {
			&Tunnel-Type := VLAN
			&Tunnel-Medium-Type := IEEE-802
			&Tunnel-Private-Group-Id := "30"
		}
	}
}
"""


def moved_raddb(hooked: Path, target: Path, port: int, *, python3: bool = True) -> Path:
    """A copy of the rendered config listening on ``port``/``port + 1`` with its own run/log paths; ``python3``
    False: without python3 anywhere (check-eap-tls sets the VLAN in unlang: the benches' baseline)."""
    shutil.copytree(hooked, target)
    site = target / "sites-enabled" / "trustport"
    original = site.read_text()
    text = original
    if not python3:
        (target / "mods-enabled" / "python3").unlink()
        (target / "sites-enabled" / "check-eap-tls").write_text(BASELINE_CHECK)
        text = text.replace("\t\tpython3\n", "").replace("\t\t\tpython3\n", "")
    text = text.replace(f"port = {_port_of(original, 'auth')}", f"port = {port}")
    text = text.replace(f"port = {_port_of(original, 'acct')}", f"port = {port + 1}")
    site.write_text(text)
    conf = target / "radiusd.conf"
    conf.write_text(conf.read_text().replace(str(hooked), str(target)))
    return target


def baseline_raddb(hooked: Path, target: Path, port: int) -> Path:
    """The same rendered config without python3 anywhere, on another port."""
    return moved_raddb(hooked, target, port, python3=False)


def _port_of(site: str, kind: str) -> int:
    block = site.split(f"type = {kind}")[1]
    return int(block.split("port = ")[1].split()[0])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="authentications per variant")
    parser.add_argument("--block", type=int, default=25, help="runs per variant before switching")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "eap_tls.json",
                        help="raw results (bench/results/eap_tls.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trustport-bench-") as tmp:
        work = Path(tmp)
        with Lab(work, datetime.now(UTC), echo=lambda _m: None) as lab:
            base_port = free_port(count=2)
            raddb = baseline_raddb(work / "raddb", work / "raddb-baseline", base_port)
            with RadiusServer(raddb, work / "baseline.log"):
                times: dict[str, list[float]] = {"baseline": [], "hook": []}
                ports = {"baseline": base_port, "hook": lab.config.radius.auth_port}
                for port in ports.values():  # warm-up
                    _auth(lab, port)
                done = 0
                while done < args.runs:
                    n = min(args.block, args.runs - done)
                    for name, port in ports.items():
                        for _ in range(n):
                            result = _auth(lab, port)
                            if result.vlan != 30:
                                raise SystemExit(f"{name}: unexpected result {result.code} {result.attributes}")
                            times[name].append(result.seconds * 1000)
                    done += n
            hook_call = _hook_call_cost(lab)
            token_cold, token_cached = _token_costs(lab)
    base, hook = times["baseline"], times["hook"]
    print(f"EAP-TLS authentications (eapol_test -> FreeRADIUS 3.2, loopback), {args.runs} runs each:")
    for name, values in times.items():
        print(f"  {name:<9} median {statistics.median(values):6.2f} ms   mean {statistics.mean(values):6.2f} ms   "
              f"p95 {percentile(values, 0.95):6.2f} ms")
    ratio = statistics.median(hook) / statistics.median(base)
    print(f"  hook / baseline (median): {ratio:.3f}  (+{statistics.median(hook) - statistics.median(base):.2f} ms)")
    print(f"  check_eap_tls in-process (validation + registry lookup + decision log, SQLite): "
          f"median {hook_call * 1e6:.0f} us = {hook_call / (statistics.median(base) / 1000) * 100:.1f}% "
          "of one baseline authentication")
    base_s = statistics.median(base) / 1000
    print(f"  EAR token verification, cold (ES256 signature + claims): median {token_cold * 1e6:.0f} us = "
          f"{token_cold / base_s * 100:.2f}% of one baseline authentication")
    print(f"  EAR token verification, cached by token hash:            median {token_cached * 1e6:.1f} us = "
          f"{token_cached / base_s * 100:.3f}% (cold/cached = {token_cold / token_cached:.0f}x)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "bench": "eap_tls", "time": datetime.now(UTC).isoformat(), "runs": args.runs,
        **{f"{name}_{stat}_ms": round(fn(values), 3) for name, values in times.items()
           for stat, fn in (("median", statistics.median), ("mean", statistics.mean),
                            ("p95", lambda v: percentile(v, 0.95)))},
        "ratio_median": round(ratio, 4), "hook_call_us": round(hook_call * 1e6, 1),
        "token_cold_us": round(token_cold * 1e6, 1), "token_cached_us": round(token_cached * 1e6, 2),
    }, indent=2) + "\n")


def _token_costs(lab: Lab, runs: int = 300) -> tuple[float, float]:
    """Seconds to verify one EAR token the first time, and when the hook's cache already holds it."""
    from cryptography.hazmat.primitives import serialization

    from policy.x509facts import spki_der
    from trustport.services.attestation_gate import AttestationGate
    from trustport.store.attestation import SqlAttestationStore
    from trustport_lab.fake_verifier import mint

    settings = lab.config.hook_settings().attestation
    assert settings is not None
    key = serialization.load_pem_private_key((lab.work / "verifier.key").read_bytes(), password=None)
    akpub = spki_der(lab.certificate("SN-1001"))
    tokens = [mint(key, status="affirming", now=lab.now, akpub=akpub, nonce=str(i))  # type: ignore[arg-type]
              for i in range(runs)]
    gate = AttestationGate(settings, SqlAttestationStore(lab.store))
    cold, cached = [], []
    for index, token in enumerate(tokens):
        start = time.perf_counter()
        gate.claims(token, str(index))
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        gate.claims(token, str(index))
        cached.append(time.perf_counter() - start)
    return statistics.median(cold), statistics.median(cached)


def _auth(lab: Lab, port: int):  # type: ignore[no-untyped-def]
    from trustport.freeradius.run import run_eapol, write_eapol_conf

    cert, key = lab.devices["SN-1001"]
    conf = write_eapol_conf(lab.work / "bench.conf", identity="sn-1001.devices.example",
                            ca_cert=lab.work / "pki" / "server-ca.pem", client_cert=cert, private_key=key)
    return run_eapol(conf, port=port, secret=lab.config.radius.clients[0].secret.get_secret_value(),
                     mac="02:00:00:00:aa:01")


def _hook_call_cost(lab: Lab, calls: int = 300) -> float:
    """Seconds per check_eap_tls call, driven directly with the attribute tuple FreeRADIUS passes."""
    from types import SimpleNamespace

    from cryptography import x509

    from tests.radius_pairs import freeradius_pairs

    radiusd = SimpleNamespace(RLM_MODULE_REJECT=0, RLM_MODULE_OK=2, RLM_MODULE_UPDATED=8, RLM_MODULE_NOOP=7,
                              RLM_MODULE_FAIL=1, L_INFO=3, L_ERR=4, L_AUTH=2, L_WARN=5,
                              radlog=lambda _level, _msg: None)
    hook = Hook(radiusd)
    if hook.instantiate({"settings": str(lab.work / "raddb" / "hook.json")}) != 0:
        raise SystemExit(hook.startup_error)
    ca = x509.load_pem_x509_certificate((lab.work / "pki" / "ldevid-ca.pem").read_bytes())
    request = {"request": freeradius_pairs(lab.certificate("SN-1001"), ca)}
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        rcode = hook.check_eap_tls(request)
        samples.append(time.perf_counter() - start)
        if not isinstance(rcode, tuple):
            raise SystemExit("hook did not accept the benchmark device")
    hook.detach(None)
    return statistics.median(samples)


if __name__ == "__main__":
    main()

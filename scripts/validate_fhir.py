#!/usr/bin/env python3
"""Validates Ward's FHIR audit exports as FHIR R4 (4.0.1) resources with fhir.resources.

Usage: validate_fhir.py ndjson FILE   (one AuditEvent per line)
       validate_fhir.py bundle FILE   (one Bundle of AuditEvents)

fhir.resources checks structure, cardinality, datatypes and primitive formats; it does not check
codes against their value sets, so the few elements the R4 specification binds with *required*
strength are checked here too. Prints how many resources passed; on the first invalid one prints
where and why and exits 1.
"""

import json
import sys

import fhir.resources
from fhir.resources.auditevent import AuditEvent
from fhir.resources.bundle import Bundle

# Required bindings of R4 AuditEvent (hl7.org/fhir/R4/auditevent.html).
ACTIONS = {"C", "R", "U", "D", "E"}
OUTCOMES = {"0", "4", "8", "12"}
NETWORK_TYPES = {"1", "2", "3", "4", "5"}
BUNDLE_TYPES = {"document", "message", "transaction", "transaction-response", "batch", "batch-response", "history", "searchset", "collection"}


def fail(where, why):
    print(f"{where}: {why}", file=sys.stderr)
    sys.exit(1)


def check_event(obj, where):
    if obj.get("resourceType") != "AuditEvent":
        fail(where, f"resourceType is {obj.get('resourceType')!r}, not AuditEvent")
    try:
        AuditEvent.parse_obj(obj)
    except Exception as e:  # the validation error names the element
        fail(where, f"not a valid R4 AuditEvent: {e}")
    if "action" in obj and obj["action"] not in ACTIONS:
        fail(where, f"action {obj['action']!r} is not one of {sorted(ACTIONS)}")
    if "outcome" in obj and obj["outcome"] not in OUTCOMES:
        fail(where, f"outcome {obj['outcome']!r} is not one of {sorted(OUTCOMES)}")
    for i, agent in enumerate(obj.get("agent", [])):
        net = agent.get("network")
        if net and net.get("type") not in NETWORK_TYPES:
            fail(where, f"agent[{i}].network.type {net.get('type')!r} is not 1-5")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("ndjson", "bundle"):
        fail("usage", "validate_fhir.py ndjson|bundle FILE")
    if fhir.resources.__fhir_version__ != "4.0.1":
        fail("setup", f"fhir.resources {fhir.resources.__version__} models FHIR {fhir.resources.__fhir_version__}, not R4 4.0.1")
    kind, path = sys.argv[1], sys.argv[2]
    count = 0
    with open(path, encoding="utf-8") as f:
        if kind == "ndjson":
            for n, line in enumerate(f, 1):
                if not line.strip():
                    fail(f"line {n}", "empty line in NDJSON")
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(f"line {n}", f"not JSON: {e}")
                check_event(obj, f"line {n}")
                count += 1
        else:
            try:
                obj = json.load(f)
            except json.JSONDecodeError as e:
                fail("bundle", f"not JSON: {e}")
            try:
                Bundle.parse_obj(obj)
            except Exception as e:
                fail("bundle", f"not a valid R4 Bundle: {e}")
            if obj.get("type") not in BUNDLE_TYPES:
                fail("bundle", f"type {obj.get('type')!r} is not a Bundle type")
            for n, entry in enumerate(obj.get("entry", [])):
                check_event(entry.get("resource", {}), f"entry {n}")
                count += 1
    print(f"{count} valid R4 AuditEvent resource(s)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Runs scim2-tester, an independent SCIM 2.0 conformance checker, against a live Ward server.

Usage: scim_conformance.py BASE_URL TOKEN CA_CERT_PEM

BASE_URL is the server's SCIM root (https://127.0.0.1:PORT/scim/v2), TOKEN an organisation's
SCIM bearer token, CA_CERT_PEM the certificate the server presents. Prints one line per check
(status, resource type, title, reason) and exits 1 if any check reports an ERROR or CRITICAL
status (a violation of a MUST of RFC 7643/7644), 0 otherwise. Used by
crates/ward-server/tests/api_scim.rs through WARD_TEST_SCIM_TESTER (scripts/test installs it).
"""

import ssl
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server


def main() -> int:
    base_url, token, ca = sys.argv[1], sys.argv[2], sys.argv[3]
    tls = ssl.create_default_context(cafile=ca)
    http = Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, verify=tls)
    client = SyncSCIMClient(http)
    results = check_server(client)
    failed = 0
    for r in results:
        bad = r.status in (Status.ERROR, Status.CRITICAL)
        failed += bad
        reason = (r.reason or "").replace("\n", " ")
        print(f"{r.status.name:10} {r.resource_type or '-':8} {r.title}: {reason}")
    print(f"{len(results)} checks, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

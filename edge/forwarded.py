"""Which address a client connects from, when proxies stand between it and the edge.

The rule is Envoy's `xff_num_trusted_hops` with `use_remote_address: true` (Istio's
`numTrustedProxies` on the gateway), applied by the edge as the last hop:

- With 0 trusted hops (the default), the client is the TCP peer; X-Forwarded-For is ignored.
- With N > 0, the client is the Nth address from the right of X-Forwarded-For (all its header lines
  joined in order, comma-separated): the address the outermost of the N trusted proxies appended for
  whatever connected to it. Whatever stands further left was sent by the client and is not believed.
- With fewer than N addresses, or a Nth entry that is not an IP address, the client is the TCP peer.

So a client that forges X-Forwarded-For through the trusted proxies only adds entries on the left, which
are never read; N must be exactly the number of proxies in front of the edge that append to the header,
and the edge must be reachable only through them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted_hops: int) -> str | None:
    """The client's address given the TCP peer and the X-Forwarded-For header lines received."""
    if trusted_hops <= 0:
        return peer
    entries = [entry.strip() for line in forwarded_for for entry in line.split(",")]
    if len(entries) < trusted_hops:
        return peer
    candidate = entries[-trusted_hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer

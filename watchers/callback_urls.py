"""Where a callback may go: a URL canonicalised once, exactly as the HTTP client will see it,
and the host in that form checked.

aiohttp parses a URL with yarl, which maps a Unicode host through IDNA (UTS-46): full-width
dots and digits or enclosed digits (`127。0。0。1`, `①②⑦.0.0.1`) become the IPv4 literal
`127.0.0.1`, which aiohttp then connects to without asking the resolver. So the check runs on
yarl's own parse, and the sender hands the client that very URL object. Numeric forms that only
the C library reads as an address (`127.1`, `2130706433`, `0177.0.0.1`, `0x7f.1`, `0`), trailing
dots, IPv6 forms that embed IPv4 and control characters are refused outright: delivery would
refuse them, so acceptance does too.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

from yarl import URL

# One DNS label (LDH, plus '_' which some providers hand out in subdomains).
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
# A last label that the C resolver (inet_aton) reads as a number: decimal, octal or 0x-hex.
_NUMERIC = re.compile(r"(0x[0-9a-f]*|[0-9]+)")

# IPv6 ranges that carry an IPv4 address or lead somewhere else than they say: IPv4-mapped and
# -compatible, NAT64 (well-known and local-use), 6to4, Teredo, IPv4/IPv6 translation.
_EMBEDS_IPV4 = tuple(ipaddress.ip_network(n) for n in (
    "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48",
    "2002::/16", "2001::/32",
))


class BlockedUrl(OSError):
    """The URL may not be called (scheme, form, or a non-public address). An OSError so that
    aiohttp reports it from the resolver or the socket factory as a connection error."""


def address_allowed(address: str) -> bool:
    """Only globally routable unicast addresses: no private, loopback, link-local, CGNAT,
    multicast, reserved or unspecified ones, and no IPv6 form that embeds IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # scope ids (fe80::1%eth0) included: never global anyway
        return False
    if isinstance(ip, ipaddress.IPv6Address) and _embeds_ipv4(ip):
        return False
    return ip.is_global and not ip.is_multicast


def _embeds_ipv4(ip: ipaddress.IPv6Address) -> bool:
    # ::/96 holds the IPv4-compatible forms, but also :: and ::1, which are plain IPv6.
    return int(ip) > 1 and any(ip in n for n in _EMBEDS_IPV4)


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """A URL in the form the client uses: `url` is what is passed to aiohttp, `host` the
    host it connects to (IDNA-encoded), `ip` set when that host is an address literal."""

    url: URL
    host: str
    port: int
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None

    @property
    def endpoint(self) -> str:
        """The connection endpoint (scheme, host, port): what the per-endpoint limits count."""
        return f"{self.url.scheme}://{self.url.raw_authority}"


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") or c.isspace() for c in text)


@functools.lru_cache(maxsize=4096)  # the same few URLs again and again; a refusal is not kept
def canonical_target(raw: str, *, allow_private: bool) -> CallbackTarget:
    """Parse `raw` exactly as aiohttp will and check where it leads (raises BlockedUrl).
    `allow_private` lets private, loopback and link-local addresses through (tests, same-host
    shops); the form checks apply either way."""
    if _has_control(raw):
        raise BlockedUrl("the URL contains spaces or control characters")
    try:
        url = URL(raw)
        host = url.raw_host
        port = url.port
    except (ValueError, UnicodeError):
        raise BlockedUrl("the URL does not parse") from None
    if url.scheme not in ("http", "https") or not host or not url.raw_authority:
        raise BlockedUrl("only http(s) URLs with a host can receive callbacks")
    if url.raw_user is not None or url.raw_password is not None:
        raise BlockedUrl("credentials in callback URLs are not allowed")
    if port is None or not 0 < port < 65536:
        raise BlockedUrl("the port is not valid")
    ip = _ip_literal(host)
    if ip is None:
        _check_name(host, allow_private)
    elif isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise BlockedUrl("IPv6 zone ids are not accepted")
    elif isinstance(ip, ipaddress.IPv6Address) and _embeds_ipv4(ip):
        raise BlockedUrl("IPv6 addresses that embed IPv4 are not accepted")
    elif not allow_private and not address_allowed(str(ip)):
        raise BlockedUrl("the host is not a public address")
    return CallbackTarget(url, host, port, ip)


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if ":" not in host:
        try:  # only the canonical dotted quad; other numeric forms fail _check_name
            return ipaddress.IPv4Address(host)
        except ValueError:
            return None
    try:
        return ipaddress.IPv6Address(host)  # a scope id (%eth0) does not parse: refused below
    except ValueError:
        raise BlockedUrl("the host is not a valid address") from None


def _check_name(host: str, allow_private: bool) -> None:
    if host.endswith("."):
        raise BlockedUrl("host names may not end with a dot")
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise BlockedUrl("the host is not a valid name")
    if _NUMERIC.fullmatch(labels[-1]):  # 127.1, 2130706433, 0177.0.0.1, 0x7f.1, 0
        raise BlockedUrl("write an IPv4 address as four decimal numbers (a.b.c.d)")
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise BlockedUrl("the host is a loopback name")


def check_url(url: str, *, allow_private: bool) -> None:
    """canonical_target without the result: the acceptance check (raises BlockedUrl)."""
    canonical_target(url, allow_private=allow_private)

"""Optional source-network checks for webhooks, in front of the signature check.

Signatures authenticate a delivery; an allowlist of the provider's networks
is defence in depth (a leaked webhook secret is not enough from elsewhere)
and sheds forged traffic before any HMAC is computed. Off by default: a
provider is checked only when named in WEBHOOK_SOURCE_CHECK or given networks
in WEBHOOK_SOURCE_NETWORKS_JSON.

Published lists (WEBHOOK_PUBLISHED_SOURCES):
- Stripe publishes the addresses its webhooks come from
  (https://stripe.com/files/ips/ips_webhooks.txt, announced 7 days before a
  change on its api-announce list); the copy below is from that file.
- Twilio publishes no fixed list for webhooks (they come from a changing
  range of cloud addresses; Twilio's guidance is to validate
  X-Twilio-Signature), so no default is shipped: enabling the check for
  Twilio requires networks of your own (e.g. an egress proxy's), and start-up
  refuses a check without any network rather than silently refusing everything.

The client address: REMOTE_ADDR, unless that is a trusted proxy
(WEBHOOK_TRUSTED_PROXIES, CIDRs; else the TRUSTED_PROXY_COUNT rule of login
throttling), in which case X-Forwarded-For is read from the right, skipping
our own proxies: the first address that is not one of them is the sender.
Anything a client wrote further left is never believed.
"""

import functools
import ipaddress
import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

WEBHOOK_PUBLISHED_SOURCES = {
    "stripe": (
        "3.18.12.63",
        "3.69.109.8",
        "3.120.168.93",
        "3.130.192.231",
        "13.235.14.237",
        "13.235.122.149",
        "18.211.135.69",
        "35.154.171.200",
        "35.157.207.129",
        "52.15.183.38",
        "54.88.130.119",
        "54.88.130.237",
        "54.187.174.169",
        "54.187.205.235",
        "54.187.216.72",
    ),
    # Twilio: none published for webhooks (see the module docstring).
}


def _networks(values, what):
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{what}: {value!r} is not an IP address or CIDR network.") from None
    return tuple(nets)


@functools.cache
def _allowlists(check, networks_json, trusted):
    lists = {}
    for provider in check:
        published = WEBHOOK_PUBLISHED_SOURCES.get(provider, ())
        lists[provider] = _networks(published, f"published sources of {provider}")
    for provider, values in networks_json:
        lists[provider] = _networks(values, f"WEBHOOK_SOURCE_NETWORKS_JSON[{provider!r}]")
    for provider, nets in lists.items():
        if not nets:
            raise ImproperlyConfigured(
                f"WEBHOOK_SOURCE_CHECK names {provider!r}, which publishes no webhook source list: "
                f"give it networks in WEBHOOK_SOURCE_NETWORKS_JSON or leave it out."
            )
    return lists, _networks(trusted, "WEBHOOK_TRUSTED_PROXIES")


def _config():
    networks = settings.WEBHOOK_SOURCE_NETWORKS or {}
    return _allowlists(
        tuple(p.strip() for p in settings.WEBHOOK_SOURCE_CHECK if p.strip()),
        tuple(sorted((k, tuple(v)) for k, v in networks.items())),
        tuple(settings.WEBHOOK_TRUSTED_PROXIES),
    )


def allowlist_for(provider):
    """The provider's allowed source networks, or None when its deliveries are not source-checked."""
    return _config()[0].get(provider)


def _address(value):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None


def _inside(address, networks):
    return address is not None and any(address in net for net in networks)


def source_address(request):
    """The sending address as our own proxies saw it (see the module docstring); None if unreadable."""
    trusted = _config()[1]
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    if not trusted:
        from ..auth.throttle import client_ip

        return _address(client_ip(request))
    if not _inside(remote, trusted):
        return remote
    hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return None  # a garbled hop our proxy passed on: believe nothing to its left
        if not _inside(address, trusted):
            return address
    return remote  # every hop is ours: the request started inside


def source_allowed(request, provider):
    """(allowed, address): True when the provider is not source-checked or the sender is in its list."""
    networks = allowlist_for(provider)
    if networks is None:
        return True, None
    address = source_address(request)
    return _inside(address, networks), address

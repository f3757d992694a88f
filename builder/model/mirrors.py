"""The builders file's `mirrors:` section, and the rewrite of a Dockerfile through it (pure).

    mirrors:
      - name: python-org                            # BUILDER_MIRROR_PYTHON_ORG_URL replaces url
        upstream: https://www.python.org/ftp/python/
        url: http://127.0.0.1:8600/python/
      - name: keyserver
        upstream: hkps://keys.openpgp.org
        url: hkp://127.0.0.1:8600

The build stage sends `dockerfile.rewrite_urls(text, mirrors)` instead of the committed text,
as it pins FROM lines: the build hash covers what was sent, the committed file is untouched,
and the Dockerfile's own sha256 and gpg steps still check what the mirror served.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from builder.model import yamldoc
from builder.model.errors import InputError

# Both ends go into RUN lines: no shell metacharacters, as versions.yaml's values. No ":" after
# the host either, so no url can hold another mirror's upstream and a rewrite never chains.
_URL = (r"(https?|hkps?)://[A-Za-z0-9][A-Za-z0-9.-]*(:\d{1,5})?(/[A-Za-z0-9._~+-]+)*/?",
        "a URL such as https://www.python.org/ftp/python/ or hkps://keys.openpgp.org "
        "(http, https, hkp or hkps; letters, digits and ._~+-)")
_NAME = (r"[A-Za-z0-9][A-Za-z0-9_.-]*", "a name of letters, digits and ._-")
_KEYS = {"name": True, "upstream": True, "url": True}

PYTHON_ORG = "https://www.python.org/ftp/python/"
KEYSERVER = "hkps://keys.openpgp.org"


@dataclass(frozen=True)
class Mirror:
    name: str  # "python-org": in the output and the report, and the env override's name
    upstream: str  # the prefix as Dockerfiles write it: "https://www.python.org/ftp/python/"
    url: str  # what replaces it: "http://127.0.0.1:8600/python/"

    @property
    def loopback(self) -> bool:
        """Served on this machine's loopback: a build reaches it only with host networking."""
        host = urlsplit(self.url).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def env_name(name: str) -> str:
    """The variable that replaces a mirror's url: python-org → BUILDER_MIRROR_PYTHON_ORG_URL."""
    return f"BUILDER_MIRROR_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_URL"


def parse(doc: yamldoc.Doc, node, where: tuple, env: dict) -> tuple[Mirror, ...]:
    """The `mirrors:` list at `where` of a builders file; every mistake names its line and field."""
    mirrors = []
    for i, entry in enumerate(doc.sequence(node, where)):
        at = where + (i,)
        fields = doc.mapping(entry, at, _KEYS)
        name = doc.text(fields["name"], at + ("name",), _NAME)
        upstream = doc.text(fields["upstream"], at + ("upstream",), _URL)
        override = env.get(env_name(name))
        if override and not re.fullmatch(_URL[0], override, re.ASCII):
            raise InputError(f"{override!r} is not {_URL[1]}", field=env_name(name))
        url = doc.text(override or fields["url"], at + ("url",), _URL)
        if upstream.endswith("/") != url.endswith("/"):
            raise doc.error(at + ("url",), f"{url!r} and upstream {upstream!r} must both end "
                            "with / or both not, so that the paths after them line up")
        if any(m.name == name for m in mirrors):
            raise doc.error(at + ("name",), f"mirror name {name!r} is used twice")
        if any(m.upstream == upstream for m in mirrors):
            raise doc.error(at + ("upstream",), f"{upstream!r} already has a mirror")
        mirrors.append(Mirror(name, upstream, url))
    return tuple(mirrors)


def served(url: str) -> tuple[Mirror, ...]:
    """The mirrors one `invoke mirror` server at `url` (http://127.0.0.1:8600) stands in for."""
    url = url.rstrip("/")
    return (Mirror("python-org", PYTHON_ORG, f"{url}/python/"),
            Mirror("keyserver", KEYSERVER, "hkp://" + url.split("://", 1)[1]))

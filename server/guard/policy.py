"""Attribute-based access policies per tenant and per user, and their checks.

A tenant's rules apply to all its users; a user's own rules replace the tenant's
rule of the same name. Rules: allowed source CIDRs, allowed hours in a time zone,
maximum file size, blocked extensions, a storage quota (counting what retention
keeps: see ``guard.usage``), refusing content whose first bytes contradict the
extension, classified folders that require mTLS or a scope, and the retention of
earlier versions and of the trash (the housekeeping job applies them). A check that
fails raises :class:`PolicyDenied` naming the rule; callers turn it into a 403
problem, an audit row and a ``policy.violated`` event.
No web framework here.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import puremagic
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, and_, delete, select

from dropline.server.guard.usage import Retention, measure
from dropline.server.storage import schema
from dropline.server.storage.db import Database

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SNIFF_BYTES = 4096
COMMON_EXTENSIONS = frozenset(
    {
        ".exe", ".dll", ".msi", ".zip", ".gz", ".7z", ".rar", ".pdf", ".png",
        ".jpg", ".jpeg", ".gif", ".docx", ".xlsx", ".pptx", ".mp4", ".elf",
    }
)  # fmt: skip


class PolicyDenied(Exception):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


class PolicyError(ValueError):
    """A policy document that does not validate; the message names the field."""


# Every name ZoneInfo knows, for the OpenAPI document.
_TIME_ZONES: dict[str, Any] = {"enum": sorted(available_timezones() | {"UTC"})}


class Hours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")
    timezone: str = Field(default="UTC", json_schema_extra=_TIME_ZONES)
    days: list[Day] = list(DAYS)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class FolderRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(pattern=r"^/")
    tags: list[str] = []
    require_mtls: bool = False
    require_scope: str | None = None


# For the OpenAPI document: IPv4 networks as a pattern (IPv6 ones are accepted too).
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_CIDRS_SCHEMA: dict[str, Any] = {
    "items": {"pattern": rf"^(?:{_IPV4_OCTET}\.){{3}}{_IPV4_OCTET}(?:/(?:3[0-2]|[12]?[0-9]))?$"},
    "description": "source networks (CIDR), IPv4 or IPv6",
}
# A host name or address, or "*." and a domain for every name under that domain.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
PUSH_HOST_PATTERN = rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$"
_PUSH_HOSTS_SCHEMA: dict[str, Any] = {"items": {"pattern": PUSH_HOST_PATTERN, "maxLength": 253}}


class Rules(BaseModel):
    """The policy document (every rule optional)."""

    model_config = ConfigDict(extra="forbid")
    allowed_cidrs: list[str] | None = Field(default=None, json_schema_extra=_CIDRS_SCHEMA)
    allowed_hours: Hours | None = None
    max_file_size: int | None = Field(default=None, ge=0)
    blocked_extensions: list[str] | None = None
    storage_quota: int | None = Field(default=None, ge=0)
    content_must_match_extension: bool | None = None
    folders: list[FolderRule] | None = None
    # Retention: versions replaced more than N days ago, beyond a file's M newest
    # revisions, and trash deleted more than D days ago are removed for good.
    version_retention_days: int | None = Field(default=None, ge=0)
    max_versions: int | None = Field(default=None, ge=1)
    trash_retention_days: int | None = Field(default=None, ge=0)
    # Push transfers only to these hosts ("files.example.com", "*.example.com"); unset
    # allows any public host, an empty list allows none.
    push_allowed_hosts: list[str] | None = Field(
        default=None,
        max_length=100,
        json_schema_extra=_PUSH_HOSTS_SCHEMA,
    )

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str] | None) -> list[str] | None:
        for cidr in value or ():
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network: {cidr!r}") from exc
        return value

    @field_validator("push_allowed_hosts")
    @classmethod
    def _push_hosts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        hosts = [h.strip().lower().rstrip(".") for h in value]
        for host in hosts:
            if len(host) > 253 or not re.fullmatch(PUSH_HOST_PATTERN, host):
                raise ValueError(f"not a host name or '*.domain' pattern: {host!r}")
        return hosts

    @field_validator("blocked_extensions")
    @classmethod
    def _exts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [("." + e.lstrip(".")).lower() for e in value]


def parse_rules(doc: Any) -> Rules:
    try:
        return Rules.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "policy"
        raise PolicyError(f"{where}: {first.get('msg', 'invalid')}") from exc


@dataclass(frozen=True, slots=True)
class Subject:
    """What the checks need to know about the caller."""

    tenant_id: str
    user_id: str
    scopes: frozenset[str]
    via_mtls: bool


def load_rules(conn: Connection, tenant_id: str, user_id: str | None) -> dict[str, Any] | None:
    row = conn.execute(
        select(schema.policies.c.rules).where(
            schema.policies.c.tenant_id == tenant_id,
            schema.policies.c.user_id.is_(None)
            if user_id is None
            else schema.policies.c.user_id == user_id,
        )
    ).first()
    return json.loads(row.rules) if row is not None else None


def save_rules(conn: Connection, tenant_id: str, user_id: str | None, rules: Rules | None) -> None:
    """Replace (or with ``None`` remove) the tenant's or the user's policy."""
    cond = and_(
        schema.policies.c.tenant_id == tenant_id,
        schema.policies.c.user_id.is_(None)
        if user_id is None
        else schema.policies.c.user_id == user_id,
    )
    conn.execute(delete(schema.policies).where(cond))
    forget_cached()
    if rules is not None:
        conn.execute(
            schema.policies.insert().values(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                user_id=user_id,
                rules=rules.model_dump_json(exclude_none=True),
                updated_at=time.time(),
            )
        )


def effective(conn: Connection, tenant_id: str, user_id: str) -> Rules:
    merged = dict(load_rules(conn, tenant_id, None) or {})
    merged.update(load_rules(conn, tenant_id, user_id) or {})
    return Rules.model_validate(merged)


# Effective rules are read on every request: they are kept for a few seconds. A change
# made in this process (the admin API) clears them at once; one made by the CLI, in
# another process, applies within CACHE_SECONDS.
CACHE_SECONDS = 5.0
_cache: dict[tuple[str, str], tuple[float, Rules]] = {}
_cache_lock = threading.Lock()


def effective_cached(db: Database, tenant_id: str, user_id: str) -> Rules:
    now = time.monotonic()
    key = (tenant_id, user_id)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    with db.read() as conn:
        rules = effective(conn, tenant_id, user_id)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = (now + CACHE_SECONDS, rules)
    return rules


def forget_cached() -> None:
    with _cache_lock:
        _cache.clear()


def check_request(rules: Rules, source_ip: str | None, now: float | None = None) -> None:
    """Rules that hold for every request: where from, and when."""
    if rules.allowed_cidrs is not None:
        try:
            ip = ipaddress.ip_address(source_ip or "")
        except ValueError:
            raise PolicyDenied(
                "allowed_cidrs", "requests from an unknown address are not allowed"
            ) from None
        if not any(ip in ipaddress.ip_network(c, strict=False) for c in rules.allowed_cidrs):
            raise PolicyDenied("allowed_cidrs", f"requests from {ip} are not allowed by policy")
    if rules.allowed_hours is not None:
        hours = rules.allowed_hours
        local = datetime.fromtimestamp(
            now if now is not None else time.time(), ZoneInfo(hours.timezone)
        )
        start = dtime.fromisoformat(hours.start)
        end = dtime.max if hours.end == "24:00" else dtime.fromisoformat(hours.end)
        clock = local.time()
        inside = start <= clock < end if start <= end else (clock >= start or clock < end)
        if DAYS[local.weekday()] not in hours.days or not inside:
            raise PolicyDenied(
                "allowed_hours",
                f"access is allowed {'/'.join(hours.days)} {hours.start}-{hours.end} "
                f"{hours.timezone} only",
            )


def _extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return ("." + name.rsplit(".", 1)[-1]).lower() if "." in name.strip(".") else ""


def quota_space(conn: Connection, tenant_id: str, user_id: str) -> str | None:
    """Whose files a quota counts: a user policy's quota is the user's (their space), a
    tenant policy's is the whole tenant's (None)."""
    own = load_rules(conn, tenant_id, user_id) or {}
    return user_id if "storage_quota" in own else None


def check_upload(
    conn: Connection | None,
    rules: Rules,
    subject: Subject,
    path: str,
    size: int | None,
    replaces: int = 0,
) -> None:
    """Rules for a new or replaced file: size, extension, quota, folder classification.

    ``replaces``: bytes the quota stops counting once the file lands (what it replaces,
    when retention keeps no earlier version).
    """
    check_path(rules, subject, path)
    ext = _extension(path)
    if rules.blocked_extensions and ext in rules.blocked_extensions:
        raise PolicyDenied("blocked_extensions", f"files ending in {ext} are not allowed")
    if size is not None and rules.max_file_size is not None and size > rules.max_file_size:
        raise PolicyDenied(
            "max_file_size", f"the file is {size} bytes; the policy allows {rules.max_file_size}"
        )
    if size is not None and rules.storage_quota is not None:
        if conn is None:
            raise ValueError("the quota check needs a connection")
        scope_user = quota_space(conn, subject.tenant_id, subject.user_id)
        now = time.time()
        counted = measure(conn, subject.tenant_id, scope_user, Retention.of(rules), now)
        used = counted.used - replaces
        if used + size > rules.storage_quota:
            raise PolicyDenied(
                "storage_quota",
                f"the storage quota of {rules.storage_quota} bytes would be exceeded "
                f"({used} used, {size} more)",
            )


def check_content(rules: Rules, path: str, head: bytes) -> None:
    """Refuse content whose first bytes say it is something its extension is not."""
    if not rules.content_must_match_extension or not head:
        return
    try:
        matches = puremagic.magic_string(head[:SNIFF_BYTES])
    except (puremagic.PureError, ValueError):
        return
    found = {m.extension.lower() for m in matches if m.extension}
    if not found:
        return
    ext = _extension(path)
    if ext not in found:
        # Name the extensions people know first (".exe" rather than ".386").
        sample = sorted(found, key=lambda e: (e not in COMMON_EXTENSIONS, e))[:3]
        raise PolicyDenied(
            "content_must_match_extension",
            f"the content looks like {', '.join(sample)}, not {ext or 'a file without extension'}",
        )


def push_host_allowed(rules: Rules, host: str) -> bool:
    """Whether the tenant's (or user's) allow-list lets a push transfer reach ``host``."""
    if rules.push_allowed_hosts is None:
        return True
    host = host.lower().rstrip(".")
    for allowed in rules.push_allowed_hosts:
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]):
                return True
        elif host == allowed:
            return True
    return False


def check_push_host(rules: Rules, host: str) -> None:
    if not push_host_allowed(rules, host):
        raise PolicyDenied(
            "push_allowed_hosts", f"push transfers to {host} are not allowed by the policy"
        )


def check_path(rules: Rules, subject: Subject, path: str) -> None:
    """Classified folders: everything at or under the folder needs what it requires."""
    for folder in rules.folders or ():
        base = folder.path.rstrip("/") or "/"
        if path != base and not path.startswith(base.rstrip("/") + "/"):
            continue
        label = ", ".join(folder.tags) or "classified"
        if folder.require_mtls and not subject.via_mtls:
            raise PolicyDenied("folders", f"{base} is {label}: it needs a client certificate")
        if folder.require_scope and folder.require_scope not in subject.scopes:
            raise PolicyDenied(
                "folders", f"{base} is {label}: it needs the {folder.require_scope} scope"
            )


__all__ = [
    "PolicyDenied",
    "PolicyError",
    "Rules",
    "Subject",
    "check_content",
    "check_path",
    "check_push_host",
    "check_request",
    "check_upload",
    "effective",
    "effective_cached",
    "load_rules",
    "parse_rules",
    "push_host_allowed",
    "quota_space",
    "save_rules",
]

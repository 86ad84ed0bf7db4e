"""Configuration: defaults < config file (TOML) < CARGOHOLD_* environment < command-line flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "CARGOHOLD_"


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: str = "./cargohold-data"
    database_url: str = ""  # empty: SQLite file in the data directory
    workers: int = 1
    # "cargohold": the server of http/server.py; "granian": the ASGI server used before it (kept as
    # a fallback for one release; its uploads are ~20% slower, docs/benchmarks.md).
    http_server: str = "cargohold"
    http_idle_timeout: float = 75.0  # seconds a connection may sit idle (or a client not read) before it is closed
    account_id: str = "000000000000"
    region: str = "us-east-1"
    registry_host: str = ""  # host[:port] in repositoryUri; empty: the listening host and port
    create_on_push: bool = True  # OCI registries create repositories on first push; ECR needs a flag
    tls_cert: str = ""
    tls_key: str = ""
    tls_self_signed: bool = False
    tls_names: list[str] = field(default_factory=list)  # extra names/addresses for the generated cert
    secret_key: str = ""  # base64 Fernet key; empty: generated into the data directory
    log_level: str = "info"
    max_tags_page: int = 1000
    gc_grace: int = 3600  # seconds an unreferenced blob is kept before collection
    gc_interval: int = 3600  # seconds between background collections (0: never)
    upload_max_age: int = 86400  # seconds before an abandoned upload session is purged
    lifecycle_interval: int = 3600  # seconds between background lifecycle runs (0: never)
    endpoint_id: str = ""  # this listener's private endpoint id (aws:SourceVpce), e.g. vpce-0a1b2c3d
    endpoints: list[str] = field(default_factory=list)  # extra listeners "HOST:PORT=vpce-id"
    trusted_proxies: list[str] = field(default_factory=list)  # CIDRs whose X-Forwarded-For is believed
    audit: bool = True  # record every authorization decision in the audit trail
    audit_retention_days: int = 90  # decisions older than this are purged hourly (0: kept forever)
    # Vulnerability scanning (services/scanning): background scan threads, size caps, the OSV feed.
    scan_workers: int = 1  # scans run in this many background threads per server process
    scan_max_layer_bytes: int = 8 << 30  # uncompressed bytes read from one layer before the scan fails
    scan_max_file_bytes: int = 512 << 20  # an RPM database, Java archive or executable larger is skipped
    vulndb_urls: list[str] = field(default_factory=list)  # OSV all.zip URLs to refresh from (empty: never)
    vulndb_refresh_interval: int = 86400  # seconds between refreshes from vulndb_urls
    # Usage and cost (services/metering.py): client networks whose transfer is free, ECR's prices, cadence.
    same_region_networks: list[str] = field(default_factory=lambda: [
        "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])
    price_storage_gb_month: float = 0.10  # USD per GB-month stored (GB = 2**30 bytes)
    price_transfer_internet_gb: float = 0.09  # USD per GB pulled from outside same_region_networks
    metering_flush_seconds: float = 5.0  # how often in-process transfer counters reach the database
    metering_snapshot_seconds: float = 900.0  # how often storage is sampled (0: never)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert) or self.tls_self_signed

    @property
    def public_host(self) -> str:
        if self.registry_host:
            return self.registry_host
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"{host}:{self.port}"


def _coerce(value: Any, default: Any, name: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected a boolean, got {value!r}")
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if isinstance(default, list):
        if isinstance(value, list):
            return [str(v) for v in value]
        text = str(value).strip()
        if text.startswith("["):
            return [str(v) for v in json.loads(text)]
        return [part.strip() for part in text.split(",") if part.strip()]
    return str(value)


def load_config(config_file: str | None = None, overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    cfg = Config()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
        for key, value in doc.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ValueError(f"{path}: unknown setting {key!r}")
            setattr(cfg, name, _coerce(value, getattr(cfg, name), name))
    for name in fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            setattr(cfg, name, _coerce(raw, getattr(cfg, name), ENV_PREFIX + name.upper()))
    for name, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, name, _coerce(value, getattr(cfg, name), name))
    if not (len(cfg.account_id) == 12 and cfg.account_id.isdigit()):
        raise ValueError(f"account_id must be 12 digits, got {cfg.account_id!r}")
    for network in cfg.same_region_networks:
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise ValueError(f"same_region_networks: not a network: {network!r}") from None
    if cfg.price_storage_gb_month < 0 or cfg.price_transfer_internet_gb < 0:
        raise ValueError("prices cannot be negative")
    if cfg.audit_retention_days < 0:
        raise ValueError(f"audit_retention_days cannot be negative (0 keeps all), got {cfg.audit_retention_days}")
    if cfg.http_server not in ("cargohold", "granian"):
        raise ValueError(f"http_server must be 'cargohold' or 'granian', got {cfg.http_server!r}")
    if cfg.http_idle_timeout <= 0:
        raise ValueError(f"http_idle_timeout must be positive, got {cfg.http_idle_timeout}")
    return cfg


def to_environ(cfg: Config) -> dict[str, str]:
    """The config as CARGOHOLD_* variables, so worker processes rebuild exactly the same config."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        out[ENV_PREFIX + f.name.upper()] = json.dumps(value) if isinstance(value, list) else str(value)
    return out

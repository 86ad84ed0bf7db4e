from pathlib import Path

import pytest

from cargohold.config import load_config, to_environ


def test_defaults() -> None:
    cfg = load_config(environ={})
    assert (cfg.host, cfg.port, cfg.region, cfg.workers) == ("127.0.0.1", 5000, "us-east-1", 1)
    assert cfg.public_host == "127.0.0.1:5000"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('port = 6000\nregion = "eu-west-1"\naccount-id = "111122223333"\ntls_names = ["a", "b"]\n')
    env = {"CARGOHOLD_PORT": "7000", "CARGOHOLD_CREATE_ON_PUSH": "false"}
    cfg = load_config(str(path), {"region": "ap-south-1"}, environ=env)
    assert cfg.port == 7000 and cfg.region == "ap-south-1" and cfg.account_id == "111122223333"
    assert cfg.create_on_push is False and cfg.tls_names == ["a", "b"]


def test_round_trip_through_environ() -> None:
    cfg = load_config(environ={}, overrides={"tls_names": ["x.test", "10.0.0.1"], "port": 5001})
    assert load_config(environ=to_environ(cfg)) == cfg


@pytest.mark.parametrize("env", [{"CARGOHOLD_PORT": "abc"}, {"CARGOHOLD_ACCOUNT_ID": "12"},
                                 {"CARGOHOLD_CREATE_ON_PUSH": "maybe"}, {"CARGOHOLD_AUDIT_RETENTION_DAYS": "ninety"},
                                 {"CARGOHOLD_AUDIT_RETENTION_DAYS": "-1"}, {"CARGOHOLD_HTTP_SERVER": "nginx"},
                                 {"CARGOHOLD_HTTP_IDLE_TIMEOUT": "0"}, {"CARGOHOLD_HTTP_IDLE_TIMEOUT": "soon"}])
def test_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        load_config(environ=env)


def test_unknown_file_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("nope = 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(str(path), environ={})

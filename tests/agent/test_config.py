"""agent.toml under the policy file: validation messages, locking, comment-preserving edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropline.agent.config import ConfigError, LockedError, NotAllowedError, load
from dropline.agent.configedit import ConfigEditor
from dropline.sync.types import FolderMode


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "home" / "agent.toml"


@pytest.fixture
def no_policy(tmp_path: Path) -> Path:
    return tmp_path / "absent-policy.toml"


def test_full_file_loads_with_every_key(cfg: Path, no_policy: Path, tmp_path: Path) -> None:
    write(
        cfg,
        f"""
server_url = "https://mft.example.com/"
concurrency = 8
notifications = false
[bandwidth]
upload_kbps = 512
[[folders]]
local = "{tmp_path}/Drop"
remote = "/in"
mode = "upload-only"
after_upload = "archive"
archive_dir = "{tmp_path}/Sent"
ignore = ["*.bak"]
""",
    )
    config = load(cfg, no_policy)
    assert config.server_url == "https://mft.example.com"
    assert config.concurrency == 8 and config.notifications is False
    assert config.engine_settings().upload_limit_bps == 512 * 1024
    assert config.engine_settings().download_limit_bps is None
    (folder,) = config.folders
    assert folder.local == tmp_path / "Drop" and folder.mode is FolderMode.UPLOAD_ONLY
    assert folder.spec().archive_dir == tmp_path / "Sent"
    assert folder.ignore == ("*.bak",)


def test_missing_file_is_empty_config(cfg: Path, no_policy: Path) -> None:
    config = load(cfg, no_policy)
    assert config.server_url is None and config.folders == ()


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[[folders]]\nlocal = "/x"\nmode = "both"\n', "folders[0].mode", "'both'"),
        ('concurrency = "4"\n', "concurrency", "valid integer"),
        ("concurrency = 0\n", "concurrency", "greater than or equal to 1"),
        ('server_url = "ftp://x"\n', "server_url", "http:// or https://"),
        ('server_url = "https://bob:pw@x.example"\n', "server_url", "must not contain a user name"),
        ('colour = "blue"\n', "colour", "not a known setting"),
        ('api_key = "dlk_secret"\n', "api_key", "credentials never go in a config file"),
        ('[[folders]]\nlocal = "relative/dir"\n', "folders[0].local", "absolute path"),
        ('[[folders]]\nlocal = "/x"\nremote = "in"\n', "folders[0].remote", "absolute server path"),
        ('[[folders]]\nlocal = "/x"\nremote = "/a/../b"\n', "folders[0].remote", "'..'"),
        (
            '[[folders]]\nlocal = "/x"\nafter_upload = "remove"\n',
            "folders[0].after_upload",
            "upload-only",
        ),
        (
            '[[folders]]\nlocal = "/x"\nmode = "upload-only"\nafter_upload = "archive"\n',
            "folders[0].archive_dir",
            "required",
        ),
        (
            '[[folders]]\nlocal = "/x"\n[[folders]]\nlocal = "/x/y"\n',
            "folders[1].local",
            "overlaps",
        ),
        ("[bandwidth]\nupload_kbps = -1\n", "bandwidth.upload_kbps", "greater than or equal to 0"),
    ],
)
def test_invalid_config_names_file_key_and_problem(
    cfg: Path, no_policy: Path, text: str, key: str, words: str
) -> None:
    write(cfg, text)
    with pytest.raises(ConfigError) as err:
        load(cfg, no_policy)
    assert err.value.file == str(cfg)
    assert err.value.key == key
    assert words in err.value.problem
    assert str(err.value).startswith(f"{cfg}: {key}: ")


def test_credential_value_never_echoed_in_error(cfg: Path, no_policy: Path) -> None:
    write(cfg, 'api_key = "dlk_very_secret_value"\n')
    with pytest.raises(ConfigError) as err:
        load(cfg, no_policy)
    assert "dlk_very_secret_value" not in str(err.value)


def test_broken_toml_names_the_file(cfg: Path, no_policy: Path) -> None:
    write(cfg, "server_url = \n")
    with pytest.raises(ConfigError) as err:
        load(cfg, no_policy)
    assert err.value.key is None and "not valid TOML" in str(err.value)


POLICY = """
server_url = "https://mft.corp.example"
locked = ["server_url", "bandwidth"]
allow_sign_out = false
[bandwidth]
upload_kbps = 1000
[[folders]]
local = "{root}/Invoices"
remote = "/invoices"
mode = "upload-only"
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write(tmp_path / "etc" / "policy.toml", POLICY.format(root=tmp_path))


def test_policy_values_and_folders_apply_and_are_locked(
    cfg: Path, policy: Path, tmp_path: Path
) -> None:
    config = load(cfg, policy)
    assert config.server_url == "https://mft.corp.example"
    assert config.upload_kbps == 1000
    assert config.is_locked("server_url") and config.is_locked("bandwidth.download_kbps")
    assert config.is_locked("allow_sign_out") and not config.allow_sign_out
    assert not config.is_locked("concurrency")
    (folder,) = config.folders
    assert folder.managed and folder.to_json()["locked"] is True
    settings = config.settings()
    assert settings["server_url"] == {"value": "https://mft.corp.example", "locked": True}
    assert settings["concurrency"] == {"value": 4, "locked": False}


def test_locked_key_in_user_file_is_refused_and_policy_value_kept(cfg: Path, policy: Path) -> None:
    write(cfg, 'server_url = "https://home.example"\nconcurrency = 2\n')
    config = load(cfg, policy)
    assert config.server_url == "https://mft.corp.example"
    assert config.concurrency == 2
    (line,) = config.refused
    assert "server_url: set by your administrator" in line


def test_user_folder_over_a_managed_folder_is_refused(
    cfg: Path, policy: Path, tmp_path: Path
) -> None:
    write(cfg, f'[[folders]]\nlocal = "{tmp_path}/Invoices"\nmode = "two-way"\n')
    config = load(cfg, policy)
    assert [f.mode for f in config.folders] == [FolderMode.UPLOAD_ONLY]
    assert "set by your administrator" in config.refused[0]


def test_locked_setting_refused_by_editor_and_file_untouched(cfg: Path, policy: Path) -> None:
    write(cfg, "# mine\nconcurrency = 2\n")
    editor = ConfigEditor(cfg, policy)
    for key, value in [
        ("server_url", "https://x.example"),
        ("bandwidth.upload_kbps", 1),
        ("allow_sign_out", True),
    ]:
        with pytest.raises(LockedError) as err:
            editor.set(key, value)
        assert err.value.problem == "set by your administrator"
        assert err.value.key == key
    assert cfg.read_text() == "# mine\nconcurrency = 2\n"


def test_managed_folder_cannot_be_removed(cfg: Path, policy: Path, tmp_path: Path) -> None:
    with pytest.raises(LockedError):
        ConfigEditor(cfg, policy).remove_folder(tmp_path / "Invoices")


def test_adding_folders_turned_off_by_policy(cfg: Path, tmp_path: Path) -> None:
    pol = write(tmp_path / "p.toml", "allow_add_folders = false\n")
    with pytest.raises(NotAllowedError) as err:
        ConfigEditor(cfg, pol).add_folder({"local": str(tmp_path / "D")})
    assert "administrator" in str(err.value)
    assert not cfg.exists()
    write(cfg, f'[[folders]]\nlocal = "{tmp_path}/D"\n')
    config = load(cfg, pol)
    assert config.folders == () and "set by your administrator" in config.refused[0]


def test_unknown_lock_in_policy_is_a_policy_error(cfg: Path, tmp_path: Path) -> None:
    pol = write(tmp_path / "p.toml", 'locked = ["colour"]\n')
    with pytest.raises(ConfigError) as err:
        load(cfg, pol)
    assert err.value.file == str(pol) and err.value.key == "locked"


def test_edits_keep_comments_and_layout(cfg: Path, no_policy: Path, tmp_path: Path) -> None:
    original = (
        "# Dropline agent settings, maintained by me\n"
        'server_url = "http://127.0.0.1:8600"  # local test server\n'
        "\n[bandwidth]\n# keep the office line usable\nupload_kbps = 100\n"
    )
    write(cfg, original)
    editor = ConfigEditor(cfg, no_policy)
    editor.set("concurrency", 6)
    editor.set("bandwidth.upload_kbps", 200)
    _config, folder = editor.add_folder(
        {"local": str(tmp_path / "Box"), "remote": "/box", "mode": "download-only"}
    )
    text = cfg.read_text()
    assert "# Dropline agent settings, maintained by me" in text
    assert "# local test server" in text and "# keep the office line usable" in text
    assert "upload_kbps = 200" in text
    config = load(cfg, no_policy)
    assert config.concurrency == 6 and config.folder(tmp_path / "Box") == folder
    assert (cfg.stat().st_mode & 0o777) == 0o600
    editor.remove_folder(tmp_path / "Box")
    assert load(cfg, no_policy).folders == ()
    assert "# local test server" in cfg.read_text()


def test_invalid_edit_changes_nothing(cfg: Path, no_policy: Path, tmp_path: Path) -> None:
    write(cfg, "concurrency = 2\n")
    editor = ConfigEditor(cfg, no_policy)
    with pytest.raises(ConfigError) as err:
        editor.set("concurrency", 0)
    assert err.value.key == "concurrency"
    with pytest.raises(ConfigError):
        editor.set("server_url", "not a url")
    with pytest.raises(ConfigError):
        editor.add_folder({"local": str(tmp_path / "X"), "remote": "no-slash"})
    with pytest.raises(ConfigError) as unknown:
        editor.set("colour", "blue")
    assert "is not a setting" in unknown.value.problem
    assert cfg.read_text() == "concurrency = 2\n"


def test_adding_the_same_folder_twice_is_refused(
    cfg: Path, no_policy: Path, tmp_path: Path
) -> None:
    editor = ConfigEditor(cfg, no_policy)
    editor.add_folder({"local": str(tmp_path / "A")})
    with pytest.raises(ConfigError) as err:
        editor.add_folder({"local": str(tmp_path / "A") + "/"})
    assert "already a sync folder" in str(err.value)
    with pytest.raises(ConfigError) as nested:
        editor.add_folder({"local": str(tmp_path / "A" / "inner")})
    assert "overlaps" in str(nested.value)

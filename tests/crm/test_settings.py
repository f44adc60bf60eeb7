"""Configuration read from the environment: generated secrets, optional integrations."""

import json
import os
import subprocess
import sys

import pytest
from django.test import override_settings

SETTINGS_PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'providers': s.SOCIALACCOUNT_PROVIDERS, 'secret': s.SECRET_KEY, "
    "'fernet': s.FIELD_ENCRYPTION_KEY, 'db': s.DATABASES['default']['ENGINE']}))"
)


def _settings_in_subprocess(project_root, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL"}
    }
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE],
        cwd=project_root,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_first_start_generates_secrets_once_into_the_env_file(tmp_path, project_root):
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=false")
    env = {"CRM_ENV_FILE": str(env_file), "CRM_VAR_DIR": str(tmp_path)}

    first = _settings_in_subprocess(project_root, **env)
    second = _settings_in_subprocess(project_root, **env)

    assert first["secret"] == second["secret"]
    assert len(first["secret"]) >= 50
    assert first["fernet"] == second["fernet"]
    assert first["db"] == "django.db.backends.sqlite3"
    text = env_file.read_text()
    assert text.startswith("DEBUG=false\n")
    assert text.count("SECRET_KEY=") == 1


def test_microsoft_sign_in_is_configured_only_when_all_three_variables_are_set(
    tmp_path, project_root
):
    env = {"CRM_ENV_FILE": str(tmp_path / ".env"), "CRM_VAR_DIR": str(tmp_path)}
    ms = {"MS_CLIENT_ID": "app-id", "MS_CLIENT_SECRET": "s3cret", "MS_TENANT_ID": "contoso"}

    partial = _settings_in_subprocess(project_root, **env, MS_CLIENT_ID="app-id")
    full = _settings_in_subprocess(project_root, **env, **ms)

    assert partial["providers"]["microsoft"]["APPS"] == []
    (app,) = full["providers"]["microsoft"]["APPS"]
    assert app["client_id"] == "app-id"
    assert app["settings"]["tenant"] == "contoso"


MICROSOFT_APP = {
    "microsoft": {
        "APPS": [
            {
                "client_id": "app-id",
                "secret": "s3cret",
                "settings": {"tenant": "contoso", "login_url": "https://login.example.test"},
            }
        ]
    }
}


@pytest.mark.django_db
@override_settings(SOCIALACCOUNT_PROVIDERS=MICROSOFT_APP, MICROSOFT_ENABLED=True)
def test_sign_in_with_microsoft_sends_the_agent_to_the_tenant_authority(client):
    page = client.get("/accounts/login/").content.decode()
    assert "Microsoft" in page

    response = client.post("/accounts/microsoft/login/")

    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("https://login.example.test/contoso/oauth2/v2.0/authorize?")
    assert "client_id=app-id" in location


@pytest.mark.parametrize(("log_format", "is_json"), [("json", True), ("text", False)])
def test_log_format_switches_between_json_lines_and_text(
    tmp_path, project_root, log_format, is_json
):
    env = {**os.environ, "CRM_ENV_FILE": str(tmp_path / ".env"), "LOG_FORMAT": log_format}
    script = (
        "import django, logging; django.setup(); logging.getLogger('crm.x').warning('hi %s', 1)"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )

    line = result.stderr.strip().splitlines()[-1]
    if is_json:
        record = json.loads(line)
        assert record["message"] == "hi 1"
        assert record["level"] == "WARNING"
        assert record["logger"] == "crm.x"
    else:
        assert line.endswith("WARNING crm.x: hi 1")

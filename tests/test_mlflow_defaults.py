"""MLflow's settings the project changes: no usage telemetry unless asked for,
and no per-run "View run" lines in the project's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what MLflow reads as "in CI or under a test" (mlflow.telemetry.utils), which turns telemetry off by itself
CI_VARS = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
           "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
           "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID")


def _user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's shell: a HOME of its own, not a test or CI run, no MLflow setting of its own."""
    env = {k: v for k, v in os.environ.items()
           if k not in CI_VARS and not k.startswith("MLFLOW_") and k not in ("DO_NOT_TRACK", "XDG_CONFIG_HOME")}
    return {**env, "HOME": str(home), "PYTHONPATH": str(REPO), **extra}


@pytest.mark.slow
def test_a_run_writes_no_telemetry_file_unless_telemetry_is_turned_on(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    telemetry = home / ".config" / "mlflow" / "telemetry.json"
    # turned on, MLflow writes its installation id as it is imported: the environment can show it
    on = subprocess.run([sys.executable, "-c", "import ablation.tracking, mlflow"], capture_output=True, text=True,
                        env=_user_env(home, MLFLOW_DISABLE_TELEMETRY="false"), timeout=300)
    assert on.returncode == 0, on.stderr
    assert telemetry.is_file()
    shutil.rmtree(home / ".config")
    run = subprocess.run(
        [sys.executable, "-m", "ablation", "train", "mlp_sample", "--data", "synthphone:tiny-v2",
         "--set", "train.epochs=1", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--no-progress"],
        capture_output=True, text=True, env=_user_env(home), timeout=600)
    assert run.returncode == 0, run.stderr
    assert not telemetry.exists() and not (home / ".config" / "mlflow").exists()


@pytest.mark.slow
def test_the_defaults_are_set_before_mlflow_is_imported_and_a_users_setting_wins(tmp_path):
    # parsing the command line imports every command, `ui` imports `tracking`: the defaults are in place
    code = ("import os, sys, ablation.cli; ablation.cli.build_parser(); assert 'mlflow' not in sys.modules; "
            "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT'])")
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=_user_env(tmp_path), timeout=300)
    assert default.stdout.split() == ["true", "true"], default.stderr
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_user_env(tmp_path, MLFLOW_DISABLE_TELEMETRY="false"), timeout=300)
    assert chosen.stdout.split() == ["false", "true"], chosen.stderr

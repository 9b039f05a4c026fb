"""--reload / --workers found in Procfiles, Dockerfiles, compose files, Makefiles, pyproject
scripts, shell scripts and code."""

from __future__ import annotations

import ast
import textwrap

import pytest

from chatkeep.doctor.config import is_config, scan_code, scan_text
from chatkeep.doctor.imports import ImportMap

TRIGGERS = {
    "Procfile": ("web: gunicorn -w 4 -k uvicorn.workers.UvicornWorker app:app", "--workers 4"),
    "Procfile.dev": ("web: uvicorn app:app --reload --port $PORT", "uvicorn --reload"),
    "Dockerfile": ('CMD ["uvicorn", "app:app", "--workers", "4"]', "uvicorn --workers 4"),
    "Dockerfile.prod": ("CMD gunicorn app:app --workers=$(nproc)", "--workers $(nproc)"),
    "docker-compose.yml": ("    command: fastapi dev main.py", "fastapi dev"),
    "compose.yaml": ("      WEB_CONCURRENCY: 3", "WEB_CONCURRENCY=3"),
    "Makefile": ("\tflask --app app run --debug", "flask run --debug"),
    "pyproject.toml": ('dev = "hypercorn app:app --reload"', "hypercorn --reload"),
    "run.sh": ("exec gunicorn -w8 app:app", "gunicorn --workers 8"),
}
QUIET = {
    "Procfile": "web: uvicorn app:app --workers 1",
    "Dockerfile": 'CMD ["gunicorn", "app:app"]',
    "Makefile": "# uvicorn app:app --reload   (commented out)",
    "pyproject.toml": 'scripts = "pytest -w 4"',
    "run.sh": "exec celery -A tasks worker --workers 4",
}


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_config_triggers(name: str) -> None:
    text, what = TRIGGERS[name]
    assert is_config(name)
    (trigger,) = scan_text(name, "# header\n" + text + "\n")
    assert trigger.line == 2
    assert what in trigger.what


@pytest.mark.parametrize("name", sorted(QUIET))
def test_config_near_misses(name: str) -> None:
    assert list(scan_text(name, QUIET[name])) == []


def test_not_config_files() -> None:
    assert not any(is_config(n) for n in ("README.md", "app.py", "settings.toml", "x.yml"))


def code_triggers(source: str, path: str = "main.py") -> list[str]:
    tree = ast.parse(textwrap.dedent(source))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return [t.what for t in scan_code(path, tree, ImportMap(ast.walk(tree)), calls)]


def test_code_triggers() -> None:
    assert code_triggers("import uvicorn as u\nu.run('a:app', reload=True, workers=2)") == [
        "uvicorn.run(reload=True)",
        "uvicorn.run(workers=2)",
    ]
    assert code_triggers("from flask import Flask\napp = Flask(__name__)\napp.run(debug=True)")
    assert code_triggers("workers = 4\nreload = True\n", "gunicorn.conf.py") == [
        "gunicorn workers = 4",
        "gunicorn reload = True",
    ]
    assert code_triggers(
        "import multiprocessing\nworkers = multiprocessing.cpu_count() * 2 + 1",
        "gunicorn_config.py",
    )
    assert code_triggers("import uvicorn\nuvicorn.run('a:app', workers=1)") == []
    assert code_triggers("workers = 4", "settings.py") == []
    assert code_triggers("app.run(debug=True)") == []  # not a Flask module

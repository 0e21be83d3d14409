"""The package as a pip user gets it: the README's "Install with pip" lines, run for real.

The lines are read out of README.md's code block, so the README cannot drift
from what is tested. They run one by one (bash), in an empty folder outside the
checkout: a fresh virtualenv, the wheel built from this checkout and installed
into it (not editable; its dependencies from the registry), then `init`,
`preview`, `send` to the installed `newsletter capture` and `serve`, every page
of which must answer 200. Only the build line runs in the checkout. The test
stands in for the person at a few lines: `~` is a folder of its own, `. …/activate`
puts the virtualenv first on PATH, `cd` moves on, a line ending in `&` and
`serve` start in the background on free ports, and at `$EDITOR .env` it fills in
what an operator would (the capture server as relay, a sender, a postal address,
an https BASE_URL, an editor password).

The virtualenv and the wheel are made once per session; PIP_NO_COMPILE keeps
the install quick (Python compiles what it imports).
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from newsletter.capture import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DAY = "2026-11-25"
TIMEOUT = 300  # seconds for one command (pip over the network may be slow)

# what the test writes at `$EDITOR .env`, besides the relay
OPERATOR = {
    "NEWSLETTER_FROM_ADDRESS": "news@daily.example.org",
    "NEWSLETTER_POSTAL_ADDRESS": "The Wheel Test Gazette, 5 Harbour Road, Portsmouth PO1 2AB",
    "NEWSLETTER_BASE_URL": "https://news.example.org",
    "NEWSLETTER_EDITOR_PASSWORD": "wheel-test-editor-password",
}

pytestmark = [
    pytest.mark.sqlite_only,  # the README's site keeps its database in a SQLite file
    pytest.mark.timeout(900),
]


def readme_lines() -> list[str]:
    """The commands of the code block under "## Install with pip", comments dropped."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Install with pip\n", 1)
    assert len(section) == 2, 'README.md has no "## Install with pip" section'
    block = re.search(r"^```sh\n(.*?)^```", section[1], re.S | re.M)
    assert block, 'no ```sh block in the "Install with pip" section'
    lines = []
    for raw in block.group(1).splitlines():
        line = re.sub(r"(^|\s+)#.*$", "", raw).strip()
        if line:
            lines.append(line)
    return lines


def split_install(lines: list[str]) -> tuple[list[str], list[str]]:
    """The install lines (up to the first `newsletter` command) and the lines that use it."""
    first = next(i for i, line in enumerate(lines) if line.startswith("newsletter "))
    return lines[:first], lines[first:]


@dataclass
class Shell:
    """Runs README lines as a person types them, and keeps what `cd` and `activate` change."""

    home: Path
    cwd: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    background: list[subprocess.Popen] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)  # README's port -> the free one used

    def __post_init__(self) -> None:
        checkout_venv = str(ROOT / ".venv")
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if checkout_venv not in p]
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("NEWSLETTER_") and key not in {"VIRTUAL_ENV", "PYTHONPATH"}
        }
        self.env.update(PATH=os.pathsep.join(path), PIP_NO_COMPILE="1", COLUMNS="200")

    def expand(self, line: str) -> str:
        return re.sub(r"(?<![\w/])~/", f"{self.home}/", line)

    def run(self, line: str, *, cwd: Path | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["bash", "-c", self.expand(line)],
            cwd=cwd or self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert result.returncode == 0, (
            f"README line failed (exit {result.returncode}): {line}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result

    def with_free_ports(self, line: str) -> str:
        def swap(found: re.Match[str]) -> str:
            self.ports[found.group(1)] = port = free_port()
            return f"--port {port}"

        return re.sub(r"--port (\d+)", swap, line)

    def start(self, line: str) -> tuple[subprocess.Popen, int, Path]:
        """Start a long-running line in the background; wait until its port answers."""
        command = self.with_free_ports(line.removesuffix("&").strip())
        port = int(re.search(r"--port (\d+)", command).group(1))  # type: ignore[union-attr]
        log = self.log_dir / f"{len(self.background)}-{shlex.split(command)[1]}.log"
        handle = log.open("w")
        process = subprocess.Popen(
            ["bash", "-c", f"exec {self.expand(command)}"],
            cwd=self.cwd,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        self.background.append(process)
        wait_for_port(port, process, log)
        return process, port, log

    def activate(self, line: str) -> None:
        script = Path(self.expand(shlex.split(line)[1]))
        assert script.is_file(), f"{line}: no {script}"
        venv = script.parent.parent
        self.env["VIRTUAL_ENV"] = str(venv)
        self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env['PATH']}"

    def stop(self) -> None:
        for process in self.background:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=15)


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before listening:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listened on port {port} within {timeout} s:\n{log.read_text()}")


@dataclass
class Installed:
    shell: Shell
    wheel: Path


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The README's install lines, once per session: a virtualenv with the built wheel in it."""
    base = tmp_path_factory.mktemp("wheel")
    (base / "home").mkdir()
    (base / "work").mkdir()
    (base / "logs").mkdir()
    shell = Shell(home=base / "home", cwd=base / "work", log_dir=base / "logs")
    install, _ = split_install(readme_lines())
    for line in install:
        words = shlex.split(line)
        if words[0] in {".", "source"}:
            shell.activate(line)
        elif words[0].endswith("pip") and words[1] == "wheel":
            shell.run(line, cwd=ROOT)  # "in a clone of this repository"
        else:
            shell.run(line)
    wheels = sorted(shell.home.rglob("newsletter-*.whl"))
    assert len(wheels) == 1, f"expected one wheel under ~, found {wheels}"
    assert "VIRTUAL_ENV" in shell.env, "the install lines never activate the virtualenv"
    try:
        yield Installed(shell, wheels[0])
    finally:
        shell.stop()


def test_the_wheel_holds_the_templates_samples_and_env_example(installed):
    expected = {
        **{
            f"newsletter/templates/{path.relative_to(ROOT / 'templates').as_posix()}": path
            for path in (ROOT / "templates").rglob("*")
            if path.is_file()
        },
        **{
            f"newsletter/sample/articles/{path.relative_to(ROOT / 'articles').as_posix()}": path
            for path in (ROOT / "articles").rglob("*")
            if path.is_file()
        },
        "newsletter/sample/.env.example": ROOT / ".env.example",
        "newsletter/sample/subscribers/example.csv": ROOT / "subscribers" / "example.csv",
    }
    assert "newsletter/templates/edition.css" in expected
    assert "newsletter/templates/web/editor/login.html" in expected
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        data_files = {
            name
            for name in names
            if name.startswith(("newsletter/templates/", "newsletter/sample/"))
        }
        assert data_files == set(expected)
        for name, source in expected.items():
            assert wheel.read(name) == source.read_bytes(), f"{name} differs from {source}"
        # the migrations, and the template a new revision is written from
        migrations = ROOT / "newsletter" / "store" / "migrations"
        shipped = {path.relative_to(ROOT).as_posix() for path in migrations.rglob("*")}
        shipped = {name for name in shipped if name.endswith((".py", ".mako"))}
        assert "newsletter/store/migrations/script.py.mako" in shipped
        assert shipped <= names, sorted(shipped - names)


def test_the_readme_commands_work_in_an_empty_folder(installed):
    shell = installed.shell
    where = shell.run('python -c "import newsletter; print(newsletter.__file__)"').stdout
    assert str(shell.home) in where and str(ROOT) not in where  # the wheel, not the checkout
    assert list(shell.cwd.iterdir()) == []  # an empty folder to start in

    _, use = split_install(readme_lines())
    capture_maildir: Path | None = None
    served = False
    for line in use:
        words = shlex.split(line.removesuffix("&"))
        if words[0] == "cd":
            shell.cwd = shell.cwd / words[1]
        elif words == ["$EDITOR", ".env"]:
            assert "8025" in shell.ports, "the README starts no capture server before $EDITOR"
            relay = {
                "NEWSLETTER_SMTP_HOST": "127.0.0.1",
                "NEWSLETTER_SMTP_PORT": shell.ports["8025"],
            }
            edit_env(shell.cwd / ".env", {**relay, **OPERATOR})
        elif line.endswith("&"):
            shell.start(line)
            if words[:2] == ["newsletter", "capture"]:
                capture_maildir = shell.cwd / words[words.index("--maildir") + 1]
        elif words[:2] == ["newsletter", "serve"]:
            _, port, log = shell.start(line)
            check_pages(f"http://127.0.0.1:{port}", shell.cwd, log)
            served = True
        else:
            result = shell.run(line)
            if words[:2] == ["newsletter", "init"]:
                assert "wrote" in result.stdout and "database ready" in result.stdout
            if words[:2] == ["newsletter", "send"]:
                assert "sent 10, skipped 0, failed 0" in result.stdout, result.stdout
                assert capture_maildir is not None
                check_delivered(capture_maildir / "new", shell.cwd)
    assert served, "the README never runs `newsletter serve`"


def edit_env(path: Path, values: dict[str, object]) -> None:
    """What an operator does in $EDITOR: set each key's line (or add it)."""
    text = path.read_text(encoding="utf-8")
    for key, value in values.items():
        line = f"{key}={value}"
        text, count = re.subn(rf"^{key}=.*$", lambda _m, line=line: line, text, flags=re.M)
        if not count:
            text += f"\n{line}\n"
    path.write_text(text, encoding="utf-8")


def check_delivered(maildir: Path, site: Path) -> None:
    with (site / "subscribers" / "example.csv").open(encoding="utf-8") as handle:
        expected = {row["email"] for row in csv.DictReader(handle)}
    received = [
        message_from_bytes(path.read_bytes(), policy=policy.default) for path in maildir.iterdir()
    ]
    assert sorted(str(m["X-Envelope-To"]) for m in received) == sorted(expected)
    for message in received:
        assert message["From"].addresses[0].addr_spec == OPERATOR["NEWSLETTER_FROM_ADDRESS"]
        assert message.get_body(("html",)) is not None and message.get_body(("plain",))


def check_pages(base: str, site: Path, log: Path) -> None:
    """Every page of the served site answers 200, the editor's after a real login."""
    message = next((site / "var" / "maildir" / "new").iterdir())
    unsubscribe = re.search(
        r"<https://news\.example\.org(/unsubscribe/[^>]+)>",
        str(message_from_bytes(message.read_bytes(), policy=policy.default)["List-Unsubscribe"]),
    )
    assert unsubscribe, "no https unsubscribe link in List-Unsubscribe"
    public = [
        "/subscribe",
        "/unsubscribe",
        unsubscribe.group(1),
        "/archive",
        f"/archive/{DAY}",
        "/archive/feed.xml",
        "/healthz",
        "/metrics",
        "/editor/login",
    ]
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        for path in public:
            response = client.get(path)
            assert response.status_code == 200, f"{path}: {response.status_code}\n{log.read_text()}"
        # BASE_URL is https, so the cookies are Secure: carry them by hand over http
        form = client.get("/editor/login")
        cookie = form.cookies["newsletter_form"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        login = client.post(
            "/editor/login",
            data={"password": OPERATOR["NEWSLETTER_EDITOR_PASSWORD"], "csrf_token": token[1]},
            headers={"Cookie": f"newsletter_form={cookie}"},
        )
        assert login.status_code in (302, 303), f"login: {login.status_code}\n{login.text}"
        session = {"Cookie": f"newsletter_session={login.cookies['newsletter_session']}"}
        for path in ("/editor", f"/editor/edition/{DAY}", "/editor/subscribers"):
            response = client.get(path, headers=session)
            assert response.status_code == 200, f"{path}: {response.status_code}\n{log.read_text()}"

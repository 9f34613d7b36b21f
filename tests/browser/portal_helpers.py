"""Setup shared by the portal's browser tests (test_portal.py,
test_patient_choices.py): a site made with the CLI as an operator would
(`veil init`, a recipient, a site default, `veil release` of a corpus
file for a patient whose PatientID dcmtk's dcmodify sets, `veil portal
invite`, `veil ledger checkpoint`), then `veil serve` with `[portal]`
until the test module ends.
"""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = pathlib.Path(os.environ.get("VEIL_CORPUS", ROOT / "target/corpus/base"))
CT = CORPUS / "pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm"


def veil_env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    env.update(VEIL_HOME=str(home), USER="browser-test")
    return env


def run_any(veil_bin, home, *args, stdin=None):
    """Runs `veil ARGS` with VEIL_HOME=home; returns the CompletedProcess."""
    return subprocess.run([str(veil_bin), *args], env=veil_env(home),
                          capture_output=True, text=True, input=stdin)


def run(veil_bin, home, *args, stdin=None):
    """Runs `veil ARGS`, which must succeed; returns its stdout."""
    p = run_any(veil_bin, home, *args, stdin=stdin)
    assert p.returncode == 0, f"veil {args[0]}: {p.stdout}{p.stderr}"
    return p.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plant(inp, pid, name="a.dcm", tags=()):
    """Copies the corpus CT into folder `inp` with PatientID `pid` and
    the `(tag, value)` pairs `tags` (dcmodify's `(gggg,eeee)` form)."""
    if not CT.is_file():
        pytest.skip(f"{CT} is missing: run scripts/fetch-corpus.sh")
    if not shutil.which("dcmodify"):
        pytest.skip("dcmodify (dcmtk) is missing: run scripts/system-deps.sh")
    inp.mkdir(parents=True, exist_ok=True)
    shutil.copy(CT, inp / name)
    sets = [a for t, v in tags for a in ("-m", f"{t}={v}")]
    subprocess.run(["dcmodify", "-nb", "-m", f"(0010,0020)={pid}", *sets, str(inp / name)],
                   check=True)


def make_site(veil_bin, tmp, pid, category="ai-vendor", purpose="ai-training",
              default="opt-out", tags=()):
    """A site in tmp/home with recipient `acme` and one release of the
    patient's study to it; returns (home, input folder, veil.toml, invitation
    link, base URL). The config has a `[portal]` on a free port."""
    home, inp, dest = tmp / "home", tmp / "in", tmp / "dest"
    plant(inp, pid, tags=tags)
    dest.mkdir()
    recipe = tmp / "r.toml"
    recipe.write_text('name = "t"\nversion = "1"\n')
    run(veil_bin, home, "init")
    run(veil_bin, home, "recipient", "add", "acme", "--category", category,
        "--purpose", purpose, "--recipe", str(recipe), "--retention-days", "30")
    run(veil_bin, home, "consent", "default", purpose, default)
    run(veil_bin, home, "release", "--recipient", "acme", "--purpose", purpose,
        str(inp), "--out", str(tmp / "out"))
    port = free_port()
    cfg = home / "veil.toml"
    cfg.write_text(f"""[dicom]
port = {free_port()}
bind = "127.0.0.1"
allowed_calling_aes = ["PACS"]

[[route]]
name = "acme"
called_ae = "VEIL_ACME"
recipient = "acme"
purpose = "{purpose}"
destination = "file://{dest}"

[portal]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
""")
    link = run(veil_bin, home, "portal", "invite", "--patient-id", pid,
               "--config", str(cfg)).strip().splitlines()[-1]
    # after the invitation (itself a ledger entry): the proof needs a
    # checkpoint covering the release
    run(veil_bin, home, "ledger", "checkpoint")
    return home, inp, cfg, link, f"http://127.0.0.1:{port}"


US = CORPUS / "pydicom-data-1.0.0/data_store__data__US1_UNCR.dcm"


def held_for_review(veil_bin, tmp):
    """`veil deid` of a corpus ultrasound (held: ultrasound usually carries
    burned-in text) with a new key; returns (OUT, its review folder)."""
    if not US.is_file():
        pytest.skip(f"{US} is missing: run scripts/fetch-corpus.sh")
    key, out = tmp / "deid.key", tmp / "deid-out"
    subprocess.run([str(veil_bin), "key", "new", str(key)], check=True, capture_output=True)
    p = subprocess.run([str(veil_bin), "deid", str(US), "--out", str(out), "--key", str(key)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "1 to review" in p.stderr + p.stdout, p.stderr
    return out, tmp / "deid-out.review"


def add_console(veil_bin, home, cfg, staff, password, review=()):
    """Adds `[console]` on a free port to `cfg` (showing the review folders
    `review`) and an admin `staff` (the password on stdin, as an operator
    types it); returns the console's base URL."""
    port = free_port()
    folders = ", ".join(f'"{r}"' for r in review)
    with open(cfg, "a") as f:
        f.write(f'\n[console]\nlisten = "127.0.0.1:{port}"\nreview = [{folders}]\n')
    run(veil_bin, home, "staff", "add", staff, "--role", "admin", stdin=password + "\n")
    return f"http://127.0.0.1:{port}"


def staff_sign_in(page, console, name, password):
    """Signs `name` in to the console at `console` (from its sign-in
    page); returns once the dashboard is shown."""
    page.goto(console + "/signin")
    page.get_by_label("Staff name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console + "/")


@contextlib.contextmanager
def serving(veil_bin, home, cfg, log, secrets=()):
    """Runs `veil -v serve` until the block ends, then SIGTERM: it must
    exit 0, and its log must hold none of `secrets`."""
    ports = [int(x.split('"', 1)[0]) for x in cfg.read_text().split('listen = "127.0.0.1:')[1:]]
    with open(log, "w") as out:
        proc = subprocess.Popen([str(veil_bin), "-v", "serve", "--config", str(cfg)],
                                env=veil_env(home), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the portal or console did not start"
                    time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed"
    assert code == 0, f"veil serve exited {code}: {log.read_text()}"
    text = log.read_text()
    for secret in secrets:
        assert secret not in text, "the serve log holds a patient ID, password, token or typed text"

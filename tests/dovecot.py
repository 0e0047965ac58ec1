"""A private, real Dovecot IMAP server in a temp dir, for adapter tests and benchmarks."""

from __future__ import annotations

import ctypes
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
MAIL_OWNER = "dovecot"  # owns the maildirs: Dovecot's mail processes refuse to run as root
START_TIMEOUT = 15.0
KICK_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
EX_NOUSER = 68  # doveadm kick's exit code when nobody was connected
# Maildir is a file per message; on tmpfs creating one costs ~30 us instead of ~1 ms on a VM's disk.
TMP_PARENT = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
# The server reports INTERNALDATE in its own zone; a half-hour offset away from UTC shows whether
# clients convert it rather than assume UTC (Dovecot passes TZ on to its processes).
SERVER_TZ = "America/St_Johns"
UIDLIST_AND_INDEXES = ("dovecot-uidlist", "dovecot.index*")

# Written for Dovecot 2.3 syntax; 2.4 renamed most of these settings (see _check_version).
CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth2_mechanisms}
# Tests log in with wrong passwords on purpose; the default 2 s penalty only slows them down.
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
mail_uid = {mail_owner}
mail_gid = {mail_owner}
# System users have UIDs below the default of 500, and the "dovecot" user is one of them.
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  # One file per user: Dovecot re-reads a changed passwd-file at most once a second, but
  # a file it has never opened is read on first use, so a user added mid-test is seen at once.
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={mail_owner} gid={mail_owner} home={root}/mail/%u{oauth2_userdb}
}}
# Failed logins from 127.0.0.1 would slow every later login by 2-15 s; switch the IP penalty off.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""

# Added to CONFIG only for a server that takes OAuth2 tokens (Dovecot(oauth2_introspection_url=...)).
OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
"""
# RFC 7662: Dovecot POSTs token=... and reads {"active": true, "username": ...}; the username must equal
# the one the client logged in with. No tokeninfo_url: introspection alone is enough in 2.3.
OAUTH2_CONFIG = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process dies hard, the kernel sends SIGTERM to Dovecot.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _check_version() -> str:
    version = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if not version.startswith("2.3."):
        raise RuntimeError(f"tests/dovecot.py writes Dovecot 2.3 config syntax; found {version}")
    return version


class Dovecot:
    """One Dovecot master run in the foreground (-F) as our child, with its own config, users and maildirs."""

    host = "127.0.0.1"

    def __init__(self, port: int | None = None, oauth2_introspection_url: str | None = None) -> None:
        self.port = port or free_port(self.host)
        self.oauth2_introspection_url = oauth2_introspection_url
        self.root: Path | None = None
        self.version = ""
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None
        self._deliveries = itertools.count()

    # -- lifecycle -------------------------------------------------------

    def start(self) -> "Dovecot":
        if os.geteuid() != 0:
            raise RuntimeError("tests/dovecot.py must run as root: Dovecot switches to the dovecot user itself")
        self.version = _check_version()
        self.root = Path(tempfile.mkdtemp(prefix="mailticket-dovecot-", dir=TMP_PARENT))
        # Dovecot's unprivileged processes must traverse the dir to reach the maildirs.
        self.root.chmod(0o755)
        for sub in ("run", "state", "mail", "users"):
            (self.root / sub).mkdir()
        owner = pwd.getpwnam(MAIL_OWNER)
        os.chown(self.root / "mail", owner.pw_uid, owner.pw_gid)
        for name in self._users:
            self._write_user(name)
        self.config.write_text(CONFIG.format(root=self.root, host=self.host, port=self.port, mail_owner=MAIL_OWNER,
                                             **self._oauth2_config()))
        stderr = open(self.root / "stderr.log", "wb")
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=stderr, stderr=stderr, preexec_fn=_die_with_parent, env=os.environ | {"TZ": SERVER_TZ},
        )
        stderr.close()
        try:
            self._wait_for_greeting()
        except BaseException:
            self.stop()
            raise
        return self

    def _oauth2_config(self) -> dict[str, str]:
        """The CONFIG fields that switch OAuth2 on; all empty for a password-only server."""
        if self.oauth2_introspection_url is None:
            return dict(oauth2_mechanisms="", oauth2_passdb="", oauth2_userdb="")
        (self.root / "dovecot-oauth2.conf.ext").write_text(OAUTH2_CONFIG.format(url=self.oauth2_introspection_url))
        # A userdb-only lookup (doveadm, used by deliver()) asks the passdbs whether the user exists;
        # an OAuth2 user has no passwd-file entry and the oauth2 passdb cannot answer such a lookup.
        return dict(oauth2_mechanisms=" xoauth2 oauthbearer", oauth2_passdb=OAUTH2_PASSDB.format(root=self.root),
                    oauth2_userdb=" allow_all_users=yes")

    def stop(self) -> None:
        if self._proc is not None:
            # SIGTERM to the master stops every child process it started.
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def config(self) -> Path:
        assert self.root is not None, "Dovecot is not started"
        return self.root / "dovecot.conf"

    def log(self) -> str:
        parts = [self.root / "stderr.log", self.root / "dovecot.log"] if self.root else []
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def _wait_for_greeting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on {self.host}:{self.port}:\n{self.log()}")

    # -- users and folders ---------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Adds a new user; works before and after start."""
        if name in self._users or "/" in name:
            raise ValueError(f"user {name!r} exists already or has a slash")
        self._users[name] = password
        if self.root is not None:
            self._write_user(name)

    def _write_user(self, name: str) -> None:
        (self.root / "users" / name).write_text(f"{name}:{{PLAIN}}{self._users[name]}::::::\n")

    def doveadm(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run([DOVEADM, "-c", str(self.config), *args], capture_output=True, text=True)
        if done.returncode not in ok:
            raise RuntimeError(f"doveadm {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def create_folder(self, user: str, folder: str) -> None:
        if folder.upper() != "INBOX" and folder not in self.folders(user):
            self.doveadm("mailbox", "create", "-u", user, folder)

    def folders(self, user: str) -> list[str]:
        return self.doveadm("mailbox", "list", "-u", user).splitlines()

    def status(self, user: str, folder: str = "INBOX") -> dict[str, int]:
        """messages, unseen, uidnext and uidvalidity of a folder, as the server sees them now."""
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user,
                           "messages unseen uidnext uidvalidity", folder)
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", out)}

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in the folder, read through doveadm rather than IMAP."""
        out = self.doveadm("-f", "tab", "fetch", "-u", user, "uid flags", "mailbox", folder, "all")
        rows = [line.split("\t") for line in out.splitlines()[1:] if line]
        # \\Recent is per-session noise, not something the adapter sets.
        return {int(uid): set(flags.split()) - {"\\Recent"} for uid, flags in rows}

    # -- mail ------------------------------------------------------------

    def deliver(self, user: str, raw_messages: Iterable[bytes], folder: str = "INBOX", *,
                internaldate: datetime | None = None) -> list[int]:
        """Writes messages straight into the maildir's new/ and returns their UIDs, in the given order.

        Dovecot numbers new files sorted by the "<secs>.M<usecs>" prefix of their names, so
        counting up in that prefix keeps the caller's order. INTERNALDATE is the file's mtime.
        """
        self.create_folder(user, folder)
        uidnext = self.status(user, folder)["uidnext"]
        maildir = Path(self.doveadm("mailbox", "path", "-u", user, folder).strip())
        owner = pwd.getpwnam(MAIL_OWNER)
        stamp, batch, pid = int(time.time()), next(self._deliveries), os.getpid()
        mtime = internaldate.timestamp() if internaldate else None
        for i, raw in enumerate(raw_messages):
            name = f"{stamp + i // 1_000_000}.M{i % 1_000_000}P{pid}Q{batch}.mailticket"
            tmp = maildir / "tmp" / name
            with open(tmp, "wb") as out:
                out.write(raw)
                os.fchown(out.fileno(), owner.pw_uid, owner.pw_gid)
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            tmp.rename(maildir / "new" / name)
        # The status call syncs the maildir, which is when the new files get their UIDs.
        return list(range(uidnext, self.status(user, folder)["uidnext"]))

    def client(self, user: str) -> IMAPClient:
        """A logged-in IMAPClient for the user (the caller logs out)."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        client.login(user, self._users[user])
        return client

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: Iterable[str] = (),
               internaldate: datetime | None = None) -> int:
        """APPENDs one message over IMAP with a chosen INTERNALDATE; returns its UID."""
        self.create_folder(user, folder)
        client = self.client(user)
        try:
            answer = client.append(folder, raw, flags=tuple(flags), msg_time=internaldate)
        finally:
            client.logout()
        match = re.search(rb"APPENDUID \d+ (\d+)", answer)
        assert match, f"no APPENDUID in {answer!r}"
        return int(match.group(1))

    def change_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """Renumbers the folder as a server migration would: same messages, new UIDVALIDITY, UIDs from 1."""
        self.kill_connections(user)
        maildir = Path(self.doveadm("mailbox", "path", "-u", user, folder).strip())
        for pattern in UIDLIST_AND_INDEXES:
            for path in maildir.glob(pattern):
                path.unlink()
        return self.status(user, folder)["uidvalidity"]

    def kill_connections(self, user: str) -> None:
        """Drops every IMAP connection of the user and waits until they are gone."""
        self.doveadm("kick", user, ok=(0, EX_NOUSER))
        deadline = time.monotonic() + KICK_TIMEOUT
        while user in self.doveadm("who", user).split():
            if time.monotonic() > deadline:
                raise RuntimeError(f"doveadm kick {user}: connections still open")
            time.sleep(0.05)


_user_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One private Dovecot for the session; register with `pytest_plugins = ["tests.dovecot"]`."""
    with Dovecot() as server:
        yield server


@pytest.fixture
def mailbox_user(dovecot: Dovecot) -> tuple[str, str]:
    """A fresh user with an empty mailbox on the shared server: (username, password)."""
    name, password = f"user{next(_user_numbers)}", secrets.token_hex(8)
    dovecot.add_user(name, password)
    return name, password

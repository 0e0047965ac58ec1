"""`mailticket init`: the first run, asked or scripted: config, secret files, database, first admin, next step."""

from __future__ import annotations

import argparse
import getpass
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import zoneinfo
from datetime import date
from pathlib import Path

from mailticket import setup_config
from mailticket.cli_common import EXIT_OK, UsageError
from mailticket.service.operators import OperatorError, check_password
from mailticket.config import default_config_path
from mailticket.mail import address as addresses
from mailticket.config_values import LANGUAGES
from mailticket.setup_config import GOOGLE, IMAP, MICROSOFT, PROVIDERS, Answers

DEFAULT_DATABASE = "sqlite:////var/lib/mailticket/mailticket.db"
SERVICE_USER = "mailticket"
PROVIDER_NAMES = {MICROSOFT: "Microsoft 365", GOOGLE: "Google Workspace / Gmail", IMAP: "another IMAP host"}


def add_commands(commands) -> None:
    init = commands.add_parser("init", help="first run: write the config and secrets, create the database and the "
                                            "first admin (asks, or takes flags with --non-interactive)")
    init.add_argument("--non-interactive", action="store_true", help="take every answer from the flags")
    init.add_argument("--force", action="store_true", help="overwrite an existing config file")
    init.add_argument("--shop-name")
    init.add_argument("--provider", choices=PROVIDERS)
    init.add_argument("--address", help="the support address customers write to (also the mailbox's login)")
    init.add_argument("--imap-host")
    init.add_argument("--imap-port", type=int, default=993)
    init.add_argument("--imap-security", choices=("tls", "starttls", "none"), default="tls")
    init.add_argument("--smtp-host")
    init.add_argument("--smtp-port", type=int, default=465)
    init.add_argument("--smtp-security", choices=("tls", "starttls", "none"), default="tls")
    init.add_argument("--client-id", default="", help="Microsoft 365 / Google: the app's client id")
    init.add_argument("--tenant", default="", help="Microsoft 365: the tenant (domain or id)")
    init.add_argument("--language", choices=LANGUAGES, default=None)
    init.add_argument("--timezone", default=None)
    init.add_argument("--base-url", default=None, help="the address operators open (https:// behind a proxy)")
    init.add_argument("--listen", default="127.0.0.1:8025")
    init.add_argument("--database-url", default=DEFAULT_DATABASE)
    init.add_argument("--admin", help="the first admin's user name")
    init.add_argument("--admin-email", default="")
    init.add_argument("--user", default=SERVICE_USER,
                      help='the system user the service runs as: created if missing, given the secrets and the '
                           'database ("" = leave ownership alone)')
    init.add_argument("--password-stdin", action="store_true",
                      help="read from standard input, one per line: the admin's password, then the mailbox "
                           "password (imap) or the app's client secret (google; microsoft: optional)")
    init.set_defaults(run=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    os.umask(0o077)  # the database (password hashes, customers' mail) and the secrets: nobody else's to read
    path = Path(args.config) if args.config else default_config_path()
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; run with --force to replace it (its web secret and the database are kept)")
    if args.user:
        _check_user(args.user)  # before anything is written
    answers, admin, admin_password, mailbox_secret = _Asker(args).all(path)
    secrets_dir = path.parent / "secrets"
    web_secret = secrets_dir / "web-secret"
    # A second run keeps the web secret: stored OAuth tokens and signed links are encrypted or signed with it.
    kept = web_secret.read_text(encoding="utf-8") if web_secret.is_file() else secrets.token_urlsafe(48)
    _write_secrets(secrets_dir, {"web-secret": kept,
                                 "imap-support" if answers.provider == IMAP else "oauth-client-secret": mailbox_secret})
    _write_checked(path, setup_config.render(answers, date.today()))
    from mailticket.config import load

    settings = load(path, reveal=("database",))
    try:
        _prepare_database(settings.database.url)
        _first_admin(settings, admin, admin_password, args.admin_email)
    finally:
        if args.user:
            _give(args.user, path, secrets_dir, database=settings.database.url)
    print(_next_steps(path, answers, admin))
    return EXIT_OK


def _write_checked(path: Path, text: str) -> None:
    """The config is put in place only once it loads: a bad answer never leaves a broken file behind."""
    from mailticket.config import ConfigError, load

    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)  # the service's user must reach its config
    draft = path.with_name(path.name + ".new")
    draft.write_text(text, encoding="utf-8")
    try:
        load(draft, reveal=("database",))
    except ConfigError as problem:
        draft.unlink()
        raise UsageError(f"the answers do not make a valid config: {problem}") from None
    draft.chmod(0o640)
    draft.replace(path)


def _check_user(user: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        if os.geteuid() != 0 or shutil.which("useradd") is None:
            raise UsageError(f"there is no user {user!r} to run the service as, and only root can create it; "
                             "run init as root, or pass --user \"\"") from None


class _Asker:
    """Each answer from its flag, else asked (unless --non-interactive: then a missing one is a usage error)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stdin_lines = iter(sys.stdin.read().splitlines()) if args.password_stdin else None

    def value(self, flag: str, question: str, default: str | None = None, check=None) -> str:
        given = getattr(self.args, flag.replace("-", "_"))
        while True:
            if given is None and self.args.non_interactive:
                if default is not None:
                    given = default
                else:
                    raise UsageError(f"--{flag} is required with --non-interactive")
            if given is None:
                shown_default = f" [{default}]" if default else ""
                given = input(f"{question}{shown_default}: ").strip() or (default or "")
            problem = check(given) if check else (None if given else "an answer is needed")
            if problem is None:
                return given
            if self.args.non_interactive:
                raise UsageError(f"--{flag}: {problem}")
            print(f"  {problem}", file=sys.stderr)
            given = None

    def secret(self, question: str, *, optional: bool = False) -> str:
        if self.stdin_lines is not None:
            line = next(self.stdin_lines, "")
            if not line and not optional:
                raise UsageError(f"--password-stdin: a line is missing for: {question}")
            return line
        if self.args.non_interactive:
            raise UsageError("--password-stdin is required with --non-interactive")
        while True:
            first = getpass.getpass(f"{question}: ")
            if optional and not first:
                return ""
            if first and getpass.getpass("Again: ") == first:
                return first
            print("  they differ or are empty; again", file=sys.stderr)

    def all(self, path: Path) -> tuple[Answers, str, str, str]:
        v = self.value
        if not self.args.non_interactive:
            print(f"Setting up mailticket in {path}.")
        shop = v("shop-name", "Shop name", check=_one_line_problem)
        choices = ", ".join(f"{key} ({name})" for key, name in PROVIDER_NAMES.items())
        provider = v("provider", f"Mail provider: {choices}", MICROSOFT,
                     lambda p: None if p in PROVIDERS else f"one of {', '.join(PROVIDERS)}")
        address = v("address", "Support address customers write to",
                    check=lambda a: None if addresses.is_valid(a) else "an e-mail address like atendimento@loja.com.br")
        imap = smtp = None
        client_id = tenant = ""
        if provider == IMAP:
            domain = address.partition("@")[2]
            imap = (v("imap-host", "IMAP server", f"mail.{domain}"), self.args.imap_port, self.args.imap_security)
            smtp = (v("smtp-host", "SMTP server", imap[0]), self.args.smtp_port, self.args.smtp_security)
        else:
            client_id = v("client-id", f"{PROVIDER_NAMES[provider]}: the app's client id (README: "
                                       f"\"Microsoft 365 and Google\")")
            if provider == MICROSOFT:
                tenant = v("tenant", "Microsoft 365 tenant (domain or id)", address.partition("@")[2])
        language = v("language", "Language for customers and operators (pt-BR, en)", "pt-BR",
                     lambda lang: None if lang in LANGUAGES else "pt-BR or en")
        timezone = v("timezone", "Time zone", "America/Sao_Paulo", _time_zone_problem)
        base_url = v("base-url", "Address operators open in the browser", f"http://{self.args.listen}",
                     lambda u: None if u.startswith(("http://", "https://")) else "a URL like https://suporte.loja.com.br")
        admin = v("admin", "First admin's user name", "admin")
        while True:
            admin_password = self.secret(f"Password for {admin}")
            try:
                check_password(admin_password)
                break
            except OperatorError as refused:
                if self.args.non_interactive or self.stdin_lines is not None:
                    raise UsageError(f"the admin's password: {refused}") from None
                print(f"  {refused}", file=sys.stderr)
        mailbox_secret = ""
        if provider == IMAP:
            mailbox_secret = self.secret(f"Password of the mailbox {address}")
        elif provider == GOOGLE:
            mailbox_secret = self.secret("The app's client secret (Google)")
        else:
            mailbox_secret = self.secret("The app's client secret (empty for a public client)", optional=True)
        answers = Answers(shop, provider, address, language, timezone, base_url, self.args.listen,
                          self.args.database_url, str(path.parent / "secrets"), imap, smtp, client_id, tenant,
                          has_client_secret=bool(mailbox_secret) and provider != IMAP)
        return answers, admin, admin_password, mailbox_secret


def _one_line_problem(text: str) -> str | None:
    if not text.strip():
        return "an answer is needed"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "one line of text, without control characters"
    return None


def _time_zone_problem(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"{name!r} is not a time zone; use a name like America/Sao_Paulo"
    return None


def _write_secrets(folder: Path, files: dict[str, str]) -> None:
    """Each secret in a file of its own that only its owner reads; the folder lists to nobody else either."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name, value in files.items():
        if not value:
            continue
        target = folder / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)
        target.chmod(0o600)


def _prepare_database(url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    from mailticket.db.store import Store

    store = Store(url)
    try:
        store.migrate()
    finally:
        store.dispose()


def _first_admin(settings, username: str, password: str, email: str) -> None:
    """Creates the admin; on a second run an existing one gets the new password and the admin role."""
    from mailticket.clock import utcnow
    from mailticket.db.store import Store
    from mailticket.service.operators import add_operator, by_username, set_admin, set_password

    store = Store(settings.database.url)
    try:
        with store.transaction() as session:
            if by_username(session, username) is None:
                add_operator(session, username, password, name=username, email=email, admin=True, now=utcnow())
            else:
                set_password(session, username, password)
                set_admin(session, username, True)
    except OperatorError as refused:
        raise UsageError(f"the first admin was not created: {refused}") from None
    finally:
        store.dispose()


def _give(user: str, config: Path, secrets_dir: Path, *, database: str) -> None:
    """The service's user reads its config and secrets (root:USER, 0640 and 0750: it cannot rewrite them) and owns
    its database. The user is created when missing, as a system user."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--home-dir", "/var/lib/mailticket", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", user], check=True)
    uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
    for target, mode in ((config, 0o640), (secrets_dir, 0o750), *((f, 0o640) for f in secrets_dir.iterdir())):
        os.chown(target, 0 if os.geteuid() == 0 else -1, gid)
        target.chmod(mode)
    from sqlalchemy.engine import make_url

    parsed = make_url(database)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        folder = Path(parsed.database).parent
        for target in (folder, *folder.glob(Path(parsed.database).name + "*")):
            os.chown(target, uid, gid)


def _next_steps(path: Path, answers: Answers, admin: str) -> str:
    steps = [f"Wrote {path} and its secrets in {path.parent / 'secrets'}; the database is ready; "
             f"{admin} is an admin.", "", "Next:",
             "    cp contrib/mailticket.service /etc/systemd/system/ && systemctl daemon-reload",
             "    systemctl enable --now mailticket"]
    if "127.0.0.1" in answers.base_url or "localhost" in answers.base_url:
        steps += ["The pages answer on this machine only: for operators elsewhere, put a TLS proxy in front "
                  "(contrib/Caddyfile) and set [web] base_url to its https:// address."]
    if answers.provider == MICROSOFT:
        steps += ["then authorize the mailbox (sign in as the support mailbox):",
                  f"    sudo -u {SERVICE_USER} mailticket -c {path} mailbox authorize support"]
    elif answers.provider == GOOGLE:
        steps += [f"then open {answers.base_url.rstrip('/')}/admin/mailboxes, sign in as {admin} and press Connect "
                  f"(register {answers.base_url.rstrip('/')}/oauth/callback as the app's redirect URI)"]
    steps += [f"and open {answers.base_url} to sign in as {admin}."]
    return "\n".join(steps)

"""Apply kcm's Alembic migrations: ``python -m schema.migrate [DATABASE_URL]`` (default KCM_DATABASE_URL)."""
from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from schema.db import redacted
from schema.settings import Settings

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def main(argv: list[str]) -> int:
    url = argv[0] if argv else Settings.from_env().database_url
    upgrade(url)
    print(f"migrated {redacted(url)} to head")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

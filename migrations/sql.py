"""Run a multi-statement SQL script inside the migration's transaction.

asyncpg's prepared statements take one command each; its plain `execute` takes a script, so
DDL with function bodies is sent through the driver connection directly.
"""

from alembic import op
from sqlalchemy.util import await_only


def run_script(sql: str) -> None:
    driver = op.get_bind().connection.driver_connection
    await_only(driver.execute(sql))

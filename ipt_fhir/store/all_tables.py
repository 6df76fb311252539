"""Import every table module so the shared metadata knows them all (Alembic, create_all in tests)."""
from . import tables  # noqa: F401
import importlib

for _name in ("search_tables", "ipt_tables", "bulk_tables"):
    try:
        importlib.import_module(f"{__package__}.{_name}")
    except ModuleNotFoundError as exc:  # a table module that has not been written yet
        if exc.name != f"{__package__}.{_name}":
            raise

"""View stamps: a token per scope that changes in the same transaction as the data a kept page shows.

A page that is expensive to build and read far more often than its data changes (the learner
dashboard) is kept, rendered, under the tokens of the scopes it was built from; a kept copy is
used only while every token is unchanged.  The scopes:

* ``catalog``: tracks, courses, assignments, cohorts and releases (what every learner's page is
  built on).  A seat taken or a capacity changed does not touch it;
* ``user:<id>``: one learner's enrollments, attempts and their graded cells, extensions, lab
  sessions, completions and certificates.

Nothing has to remember to touch a stamp: session events see every change the portal, the
grading workers and the commands make through SQLAlchemy's ORM (objects flushed, and
``update()``/``delete()``/``insert()`` statements on mapped tables run through a session) and
touch the scopes involved just before the transaction commits, in one sorted pass, so the new
token is committed with the data (a reader never pairs old data with a new token) and two
transactions never wait on each other's stamps in opposite order.  A bulk insert of learners'
rows (``academy synth``) touches ``catalog``: every kept page is built again.

On SQLite an ``update()`` or ``delete()`` of learners' rows touches ``catalog`` rather than read
whose rows they were before writing (see ``_statement``).  Tokens are random, not counters, so a
page kept from one database never matches another one that happens to count the same (tests, a
restored backup).  Raw SQL bypasses the events: kept
pages also expire (see :mod:`academy.dashboard.kept`).

Other rows kept up to date the same way (the gradebook's cells, :mod:`academy.teaching.cells`) are
computed by hooks registered with ``on_commit``: they run first in the same pass, after the last
flush and before the stamps are touched, so every transaction takes its commit-time locks in one
order (theirs, then the stamps').
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, String, event, select
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, scoped_session

from academy.extensions import db

CATALOG = "catalog"

#: Tables whose rows each belong to one learner (by ``user_id``).
LEARNER_TABLES = frozenset({"enrollment", "submission", "extension", "lab_session", "completion", "certificate"})
#: The catalog's tables, and the columns of theirs that no kept page shows.
CATALOG_TABLES = {"track": frozenset(), "course": frozenset(), "assignment": frozenset(),
                  "assignment_release": frozenset(), "cohort": frozenset({"seats_taken", "capacity"})}

_PENDING = "academy.stamps.pending"  # session.info: scopes (and graded cells' submissions) to touch
_COMMIT_HOOKS: list[Callable[[Session], None]] = []


class ViewStamp(db.Model):
    """The current token of one scope (see the module docstring)."""

    __tablename__ = "view_stamp"

    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)


def user_scope(user_id: int) -> str:
    """The scope of one learner's own rows."""
    return f"user:{user_id}"


def read(session: Session, scopes: Sequence[str]) -> tuple[int | None, ...]:
    """The tokens of ``scopes``, in order (None for a scope never touched).  Read them before the data."""
    found = dict(session.execute(select(ViewStamp.scope, ViewStamp.token).where(ViewStamp.scope.in_(scopes))).all())
    return tuple(found.get(scope) for scope in scopes)


def touch(session: Session, scopes: Iterable[str]) -> None:
    """Give each scope a new token now, in sorted order (the commit normally does it: see ``note``)."""
    table = ViewStamp.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    for scope in sorted(set(scopes)):
        statement = insert(table).values(scope=scope, token=secrets.randbits(62))
        session.execute(statement.on_conflict_do_update(index_elements=[table.c.scope],
                                                        set_={"token": statement.excluded.token}))


def note(session: Session | scoped_session, *, users: Iterable[int | None] = (), catalog: bool = False) -> None:
    """Touch these scopes when the current transaction commits (nothing when it rolls back)."""
    if isinstance(session, scoped_session):
        session = session()
    scopes, _cells = _pending(session)
    scopes.update(user_scope(u) for u in users if u is not None)
    if catalog:
        scopes.add(CATALOG)


def on_commit(hook: Callable[[Session], None]) -> None:
    """Run ``hook(session)`` as each transaction is about to commit, after its last flush, before the stamps are
    touched (a savepoint released does not run it).  What it writes must not be rows the stamps watch."""
    if hook not in _COMMIT_HOOKS:
        _COMMIT_HOOKS.append(hook)


def _pending(session: Session) -> tuple[set[str], set[int]]:
    return session.info.setdefault(_PENDING, (set(), set()))


def loaded_value(instance: Any, column: str) -> Any:
    """A column's value as the object holds it, never loaded from the database (a deleted row's is gone)."""
    from sqlalchemy import inspect

    state = inspect(instance)
    value = state.dict.get(column)
    if value is None and column in state.committed_state:
        value = state.committed_state[column]
    return value


def changed_columns(instance: Any) -> set[str]:
    """The columns of ``instance`` changed in this session (unflushed history)."""
    from sqlalchemy import inspect

    state = inspect(instance)
    return {attr.key for attr in state.attrs if attr.history.has_changes()}


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    scopes, cells = _pending(session)
    for instance in (*session.new, *session.dirty, *session.deleted):
        if not isinstance(instance, db.Model):  # another library's tables (nbgrader's gradebook)
            continue
        if instance in session.dirty and not session.is_modified(instance, include_collections=False):
            continue  # an attribute set to the value it had: nothing was written
        table = instance.__table__.name
        if table in LEARNER_TABLES:
            owner = loaded_value(instance, "user_id")
            scopes.add(user_scope(owner) if owner is not None else CATALOG)
        elif table == "cell_score":
            submission = loaded_value(instance, "submission_id")
            if submission is not None:
                cells.add(submission)
            else:
                scopes.add(CATALOG)
        elif table in CATALOG_TABLES:
            ignored = CATALOG_TABLES[table]
            if not ignored or instance not in session.dirty or changed_columns(instance) - ignored:
                scopes.add(CATALOG)


@event.listens_for(Session, "do_orm_execute")
def _statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    if name is None or getattr(table, "metadata", None) is not db.metadata:  # another library's tables
        return
    if name not in LEARNER_TABLES and name != "cell_score" and name not in CATALOG_TABLES:
        return
    scopes, _cells = _pending(state.session)
    if name in CATALOG_TABLES:
        values = getattr(state.statement, "_values", None) or {}
        columns = {getattr(key, "key", key) for key in values}
        if not (state.is_update and columns and columns <= CATALOG_TABLES[name]):
            scopes.add(CATALOG)
        return
    where = getattr(state.statement, "whereclause", None)
    if state.is_insert or where is None:  # rows of unknown learners (a bulk insert): every page
        scopes.add(CATALOG)
        return
    if state.session.get_bind().dialect.name == "sqlite":
        # Reading the owners first would pin a snapshot that a parallel writer's commit makes unwritable
        # ("database is locked"), and after the statement its condition may no longer hold: every page.
        scopes.add(CATALOG)
        return
    if name == "cell_score":
        submissions = db.metadata.tables["submission"]
        owners = select(submissions.c.user_id).where(submissions.c.id.in_(select(table.c.submission_id).where(where)))
    else:
        owners = select(table.c.user_id).where(where)
    scopes.update(user_scope(u) for u in state.session.execute(owners).scalars() if u is not None)


@event.listens_for(Session, "before_commit")
def _commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the outer commit touches
        return
    session.flush()  # the last changes' scopes
    for hook in _COMMIT_HOOKS:
        hook(session)
    scopes, cells = session.info.pop(_PENDING, (set(), set()))
    if cells:
        submissions = db.metadata.tables["submission"]
        scopes.update(user_scope(u) for u in session.execute(
            select(submissions.c.user_id).where(submissions.c.id.in_(sorted(cells)))).scalars())
    if scopes:
        touch(session, scopes)
        session.info.pop(_PENDING, None)  # touching is not a change of its own


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # committed (touched) or rolled back (nothing changed)
        session.info.pop(_PENDING, None)

"""install id: one row every process of an install shares (bus message tagging)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    install = op.create_table(
        "install",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Made once, by whichever process migrates first (api/db/migrate.py serialises them).
    op.bulk_insert(install, [{"id": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("install")

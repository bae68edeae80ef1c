"""Imports every model module so that the metadata is complete (for Alembic and create_all)."""

from academy import stamps as stamp_models
from academy.audit import models as audit_models
from academy.catalog import models as catalog_models
from academy.certificates import models as certificate_models
from academy.companies import models as company_models
from academy.completion import models as completion_models
from academy.enrollment import models as enrollment_models
from academy.grading import models as grading_models
from academy.inbox import models as inbox_models
from academy.labs import models as lab_models
from academy.mail import models as mail_models
from academy.oidc import models as oidc_models
from academy.stats import models as stats_models
from academy.teaching import models as teaching_models
from academy.users import models as user_models

__all__ = ["audit_models", "catalog_models", "certificate_models", "company_models", "completion_models",
           "enrollment_models", "grading_models", "inbox_models", "mail_models", "user_models", "lab_models",
           "oidc_models", "stats_models", "stamp_models", "teaching_models"]

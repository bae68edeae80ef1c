"""Admin forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    FloatField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from academy.users.models import Role


class CohortForm(FlaskForm):
    track_id = SelectField(_l("Track"), coerce=int, validators=[DataRequired(_l("Choose a track."))])
    name = StringField(_l("Cohort name"), validators=[DataRequired(_l("Give the cohort a name.")), Length(max=100)])
    starts_on = DateField(_l("Starts on"), validators=[DataRequired(_l("Enter a start date."))])
    ends_on = DateField(_l("Ends on"), validators=[DataRequired(_l("Enter an end date."))])
    enroll_closes_on = DateField(_l("Enrollment closes on"), validators=[Optional()])
    capacity = IntegerField(
        _l("Capacity"),
        validators=[DataRequired(_l("Enter the capacity.")), NumberRange(1, 10000, _l("Between 1 and 10000."))],
    )
    requires_approval = BooleanField(_l("Requests need an administrator's approval"))
    submit = SubmitField(_l("Create cohort"))


class CapacityForm(FlaskForm):
    capacity = IntegerField(
        _l("Capacity"),
        validators=[DataRequired(_l("Enter the capacity.")), NumberRange(1, 10000, _l("Between 1 and 10000."))],
    )
    submit = SubmitField(_l("Change capacity"))


class DecisionForm(FlaskForm):
    note = TextAreaField(_l("Note to the learner"), validators=[Optional(), Length(max=1000)])


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=[SelectChoice(r.value, r.value) for r in Role])
    submit = SubmitField(_l("Change role"))


class HoursField(FloatField):
    """A number of hours; a thousands separator (``1,000``) and spaces are allowed."""

    def process_formdata(self, valuelist: list[str]) -> None:
        super().process_formdata([v.replace(",", "").strip() for v in valuelist])


class GpuBudgetForm(FlaskForm):
    """A cohort's or a company's GPU-hour budget (``academy.labs.budgets``); empty: no budget."""

    hours = HoursField(
        _l("GPU budget (hours)"),
        description=_l("Leave it empty for no budget. 0 allows no GPU lab."),
        validators=[Optional(), NumberRange(0, 10_000_000, _l("Enter a number of hours of 0 or more."))],
    )
    below_used_ok = BooleanField(_l("Save even at or below the hours already used (its GPU labs stop)"))
    submit = SubmitField(_l("Save GPU budget"))


class CompanyBudgetForm(GpuBudgetForm):
    company_id = SelectField(_l("Company"), coerce=int, validators=[DataRequired(_l("Choose a company."))])

"""Account forms (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, EqualTo, Length
from wtforms.widgets import CheckboxInput, ListWidget

from academy.users import reference
from academy.users.tokens import SCOPES

#: A business registration number with a correct check digit, shown as the example.
EXAMPLE_BUSINESS_NUMBER = "123-45-67891"


def _choices(table: dict[str, object]) -> list[SelectChoice]:
    return [SelectChoice("", _l("Choose..."))] + [SelectChoice(code, label) for code, label in table.items()]


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(_l("Enter your email.")), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password."))])
    remember = BooleanField(_l("Keep me signed in on this computer"))
    submit = SubmitField(_l("Sign in"))


class RegistrationForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(_l("Enter your name.")), Length(max=100)])
    email = EmailField(
        _l("Email"),
        validators=[
            DataRequired(_l("Enter your email.")),
            Email(_l("Enter a valid email address."), check_deliverability=False),
            Length(max=254),
        ],
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(_l("Choose a password.")), Length(max=256)],
        description=_l("At least 10 characters, mixing letters with numbers or symbols."),
    )
    password_confirm = PasswordField(
        _l("Password again"),
        validators=[DataRequired(_l("Enter the password again.")),
                    EqualTo("password", _l("The two passwords differ."))],
    )
    company_name = StringField(
        _l("Company name"), validators=[DataRequired(_l("Enter the company name.")), Length(max=200)]
    )
    business_number = StringField(
        _l("Business registration number"),
        validators=[DataRequired(_l("Enter the business registration number.")), Length(max=14)],
        # The example must pass the check digit (reference.normalize_business_number).
        description=_l("10 digits, e.g. %(example)s", example=EXAMPLE_BUSINESS_NUMBER),
    )
    region = SelectField(_l("Region"), choices=_choices(reference.REGIONS),
                         validators=[DataRequired(_l("Choose a region."))])
    industry = SelectField(_l("Industry"), choices=_choices(reference.INDUSTRIES),
                           validators=[DataRequired(_l("Choose an industry."))])
    job_role = SelectField(_l("Job role"), choices=_choices(reference.JOB_ROLES),
                           validators=[DataRequired(_l("Choose a job role."))])
    consent = BooleanField(
        _l("I agree to the collection and use of my personal data as described above."),
        validators=[DataRequired(_l("You must agree to register."))],
    )
    submit = SubmitField(_l("Create account"))


class ConsentForm(FlaskForm):
    consent = BooleanField(
        _l("I agree to the collection and use of my personal data as described above."),
        validators=[DataRequired(_l("You must agree to take the courses."))],
    )
    submit = SubmitField(_l("Agree and continue"))


class ForgotPasswordForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(_l("Enter your email.")), Length(max=254)])
    submit = SubmitField(_l("Send reset link"))


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"),
        validators=[DataRequired(_l("Choose a password."))],
        description=_l("At least 10 characters, mixing letters with numbers or symbols."),
    )
    password_confirm = PasswordField(
        _l("New password again"),
        validators=[DataRequired(_l("Enter the password again.")),
                    EqualTo("password", _l("The two passwords differ."))],
    )
    submit = SubmitField(_l("Set new password"))


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(_l("Current password"), validators=[DataRequired(_l("Enter your password."))])
    password = PasswordField(_l("New password"), validators=[DataRequired(_l("Choose a password."))])
    password_confirm = PasswordField(
        _l("New password again"),
        validators=[DataRequired(_l("Enter the password again.")),
                    EqualTo("password", _l("The two passwords differ."))],
    )
    submit = SubmitField(_l("Change password"))


class TokenForm(FlaskForm):
    name = StringField(_l("Token name"), validators=[DataRequired(_l("Give the token a name.")), Length(max=100)])
    scopes = SelectMultipleField(
        _l("Scopes"),
        choices=[SelectChoice(key, key) for key in SCOPES],
        option_widget=CheckboxInput(),
        widget=ListWidget(prefix_label=False),
        validators=[DataRequired(_l("Choose at least one scope."))],
    )
    submit = SubmitField(_l("Create token"))


class ImportUsersForm(FlaskForm):
    file = FileField(
        _l("CSV file"),
        validators=[FileRequired(_l("Choose a CSV file.")), FileAllowed(["csv"], _l("Upload a .csv file."))],
    )
    submit = SubmitField(_l("Check and import"))

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Development admin: created once with a generated password, which is printed (make run); "
        "--reset sets and prints a new one (make superuser)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--reset", action="store_true", help="set a new generated password and print it")

    def handle(self, *args, username, reset, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is not None and not reset:
            self.stdout.write(
                f"Dev admin '{username}' exists. Forgot its password? "
                "`make superuser` (or `python manage.py dev_admin --reset`) sets a new one."
            )
            return
        # A password that is only ever printed here; a lost one is replaced, never recovered.
        password = secrets.token_urlsafe(12)
        if user is None:
            User.objects.create_superuser(username=username, email=f"{username}@localhost", password=password)
            verb = "created"
        else:
            user.set_password(password)
            # A reset also restores access if the account was locked out of admin.
            user.is_active = user.is_staff = user.is_superuser = True
            user.save(update_fields=["password", "is_active", "is_staff", "is_superuser"])
            verb = "password reset"
        self.stdout.write(self.style.SUCCESS(f"Dev admin {verb}: username={username} password={password}"))
        self.stdout.write(
            "Shown only now. Lost it? `make superuser` (or `python manage.py dev_admin --reset`) sets a new one."
        )

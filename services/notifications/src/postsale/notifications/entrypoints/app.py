"""`uvicorn --factory postsale.notifications.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.notifications.adapters.smtp import SmtpSender
from postsale.notifications.config import MIGRATIONS_DIR, SERVICE, Settings
from postsale.notifications.entrypoints import api
from postsale.notifications.entrypoints.consumers import SUBSCRIPTIONS
from postsale.notifications.entrypoints.dispatcher import email_dispatcher
from postsale.notifications.entrypoints.scheduler import reminders
from postsale.runtime.service import create_service_app


def create_app() -> FastAPI:
    # Refuses to start on a bad setting (a seller address that is not one, a missing secret).
    settings = Settings()
    sender = SmtpSender(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                        password=settings.smtp_password, starttls=settings.smtp_starttls,
                        from_address=settings.from_address)
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS,
                             background=[email_dispatcher(sender, settings.max_send_attempts), reminders()])
    app.state.dev_mailbox_dir = settings.dev_mailbox_dir
    app.include_router(api.router)
    app.include_router(api.admin)
    return app

"""`uvicorn --factory postsale.notifications.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.notifications.adapters.smtp import SmtpSender
from postsale.notifications.config import MIGRATIONS_DIR, SERVICE, Settings, WebhookSettings
from postsale.notifications.entrypoints import admin_followups, admin_templates, api, backoffice_emails, backoffice_webhooks, pages
from postsale.notifications.entrypoints import backoffice_followups
from postsale.notifications.entrypoints.consumers import SUBSCRIPTIONS
from postsale.notifications.entrypoints.dispatcher import email_dispatcher
from postsale.notifications.entrypoints.scheduler import follow_up_scheduler, follow_ups, reminders
from postsale.notifications.webhooks import api as webhooks_api
from postsale.notifications.webhooks.consumers import SUBSCRIPTIONS as WEBHOOK_SUBSCRIPTIONS
from postsale.notifications.webhooks.sender import webhook_sender
from postsale.runtime.errors import html_errors_for_pages
from postsale.runtime.service import create_service_app


def create_app() -> FastAPI:
    # Refuses to start on a bad setting (a seller address that is not one, a missing secret).
    settings = Settings()
    webhooks = WebhookSettings()
    sender = SmtpSender(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                        password=settings.smtp_password, starttls=settings.smtp_starttls,
                        from_address=settings.from_address)
    app = create_service_app(service=SERVICE, database_url=settings.database_url, admin_token=settings.admin_token,
                             migrations_dir=MIGRATIONS_DIR, subscriptions=SUBSCRIPTIONS + WEBHOOK_SUBSCRIPTIONS,
                             background=[email_dispatcher(sender, settings.max_send_attempts), reminders(),
                                         follow_ups(), webhook_sender(webhooks)])
    app.state.dev_mailbox_dir = settings.dev_mailbox_dir
    app.include_router(api.router)
    app.include_router(backoffice_emails.pages)
    app.include_router(backoffice_webhooks.pages)
    app.include_router(backoffice_followups.pages)
    app.include_router(api.admin)
    app.include_router(admin_templates.admin_templates)
    app.include_router(admin_followups.admin_followups)
    app.include_router(pages.pages)
    app.state.follow_up_scheduler = follow_up_scheduler(app.state.engine)
    html_errors_for_pages(app, templates=pages.templates, api_prefixes=("/admin",))
    app.state.webhook_settings = webhooks
    app.include_router(webhooks_api.admin)
    return app

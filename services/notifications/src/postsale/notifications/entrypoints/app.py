"""`uvicorn --factory postsale.notifications.entrypoints.app:create_app`"""

from fastapi import FastAPI

from postsale.notifications.adapters.smtp import SmtpSender
from postsale.notifications.config import SERVICE, Settings
from postsale.notifications.entrypoints import api
from postsale.notifications.entrypoints.consumers import SUBSCRIPTIONS
from postsale.notifications.entrypoints.dispatcher import email_dispatcher
from postsale.runtime.db import make_engine
from postsale.runtime.service import service_lifespan
from postsale.runtime.settings import KafkaSettings
from postsale.runtime.web import add_operational_routes, configure_logging


def create_app() -> FastAPI:
    settings = Settings()
    configure_logging(SERVICE)
    engine = make_engine(settings.database_url)
    sender = SmtpSender(settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
                        password=settings.smtp_password, starttls=settings.smtp_starttls,
                        from_address=settings.from_address)
    app = FastAPI(
        title="Postsale notifications",
        lifespan=service_lifespan(service=SERVICE, engine=engine, bootstrap_servers=KafkaSettings().bootstrap_servers,
                                  subscriptions=SUBSCRIPTIONS,
                                  background=[email_dispatcher(sender, settings.max_send_attempts)]),
    )
    app.state.engine = engine
    app.state.admin_token = settings.admin_token
    app.state.dev_mailbox_dir = settings.dev_mailbox_dir
    app.include_router(api.router)
    app.include_router(api.admin)
    add_operational_routes(app)
    return app

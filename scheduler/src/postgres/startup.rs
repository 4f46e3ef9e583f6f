//! A PostgreSQL connection's start: TLS when the server requires it, the password checked
//! against the configured users (cleartext, so over TLS where it is configured), and the Athena
//! database the connection's `database` parameter names.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use glaux_catalog::{DEFAULT_CATALOG, DEFAULT_DATABASE};
use pgwire::api::auth::{
    LoginInfo, StartupHandler, finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{DATABASE_KEY, STARTUP_DATABASE_KEY, USER_KEY, server_parameters, user_error};
use crate::client_auth::{AuthError, Users};
use crate::engine::QueryEngine;

/// Password authentication against the configured users, or none without users; then the
/// connection's database.
pub(super) struct Startup {
    pub users: Option<Arc<Users>>,
    pub engine: Arc<QueryEngine>,
    /// With TLS configured, a client that did not negotiate it is refused before it can send
    /// a password.
    pub tls_required: bool,
}

impl Startup {
    /// The Athena database a connection's `database` parameter names: an existing database, or
    /// the default one for the names clients use when they mean "the server" (`glaux`, the
    /// catalog; `postgres`; none). Any other name is refused, as PostgreSQL refuses it.
    fn database(&self, requested: Option<&String>) -> PgWireResult<String> {
        let requested = requested.map(String::as_str).unwrap_or("");
        if requested.is_empty() || requested == DEFAULT_CATALOG || requested == "postgres" {
            return Ok(DEFAULT_DATABASE.to_string());
        }
        match self.engine.database_exists(requested) {
            Ok(true) => Ok(requested.to_string()),
            Ok(false) => Err(user_error(
                crate::error::ErrorKind::UnknownDatabase.sqlstate(),
                format!(
                    "database \"{requested}\" does not exist (a Glaux database is an Athena database: see SHOW DATABASES)"
                ),
            )),
            Err(e) => Err(super::engine_error(e)),
        }
    }

    /// Authentication succeeded: choose the database, then tell the client it may query.
    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let database = self.database(client.metadata().get(pgwire::api::METADATA_DATABASE))?;
        client.metadata_mut().insert(STARTUP_DATABASE_KEY.to_string(), database.clone());
        client.metadata_mut().insert(DATABASE_KEY.to_string(), database);
        finish_authentication(client, &server_parameters()).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            return Err(user_error("28000", "this server accepts only TLS connections (sslmode=require)"));
        }
        let Some(users) = &self.users else {
            if let PgWireFrontendMessage::Startup(ref startup) = message {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                self.finish(client).await?;
            }
            return Ok(());
        };
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client.send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword)).await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let login = LoginInfo::from_client_info(client);
                let user = login.user().unwrap_or_default().to_string();
                match users.verify(&user, &password.password, Some(client.socket_addr().ip())).await {
                    Ok(()) => {
                        client.metadata_mut().insert(USER_KEY.to_string(), user);
                    }
                    Err(AuthError::Wrong) => {
                        self.engine.metrics().failed_login("postgres");
                        return Err(PgWireError::InvalidPassword(user));
                    }
                    Err(other) => return Err(user_error("28000", other.to_string())),
                }
                self.finish(client).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

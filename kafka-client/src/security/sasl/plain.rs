//! SASL/PLAIN (RFC 4616): the user name and password in one message. Use it only over TLS.

use super::{BoxFuture, SaslContext, SaslError, SaslExchange, SaslMechanism};
use crate::security::Secret;

/// SASL/PLAIN with a user name and password.
#[derive(Debug, Clone)]
pub struct Plain {
    username: String,
    password: Secret,
}

impl Plain {
    /// PLAIN for `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Plain { username: username.into(), password: password.into() }
    }
}

impl SaslMechanism for Plain {
    fn name(&self) -> &str {
        "PLAIN"
    }

    fn start<'a>(&'a self, _context: &'a SaslContext) -> BoxFuture<'a, Result<Box<dyn SaslExchange>, SaslError>> {
        let exchange = PlainExchange { sent: false, username: self.username.clone(), password: self.password.clone() };
        Box::pin(async move { Ok(Box::new(exchange) as Box<dyn SaslExchange>) })
    }
}

struct PlainExchange {
    sent: bool,
    username: String,
    password: Secret,
}

impl SaslExchange for PlainExchange {
    fn step(&mut self, _server_message: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        if self.sent {
            // The broker's (empty) answer ends the exchange.
            return Ok(None);
        }
        self.sent = true;
        // authzid (empty) NUL authcid NUL password
        let mut m = Vec::new();
        m.push(0);
        m.extend_from_slice(self.username.as_bytes());
        m.push(0);
        m.extend_from_slice(self.password.expose().as_bytes());
        Ok(Some(m))
    }
}

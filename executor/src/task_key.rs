//! The scheduler's public key for task tokens, learnt at registration: every task launched and
//! every task output read over Flight must carry a token it signed for exactly that task.

use std::sync::{Arc, RwLock};

use glaux_proto::{TaskVerifier, TokenError, TokenPurpose};

use crate::error::ExecutorError;

/// Empty until the executor registers (then every token is refused: there is no key to check).
#[derive(Clone, Debug, Default)]
pub struct TokenKey(Arc<RwLock<Option<TaskVerifier>>>);

impl TokenKey {
    pub fn set(&self, public_key: Vec<u8>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(TaskVerifier::new(public_key));
    }

    /// `Ok` if `token` lets its holder do `purpose` on this task.
    pub fn check(
        &self,
        token: &[u8],
        purpose: TokenPurpose,
        query: &str,
        stage: u32,
        task: u32,
    ) -> Result<(), ExecutorError> {
        let verifier = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        let verdict = match verifier {
            Some(verifier) => verifier.verify(token, purpose, query, stage, task),
            None => Err(TokenError::NoKey),
        };
        verdict.map_err(|source| ExecutorError::Token { query: query.to_string(), stage, task, source })
    }
}

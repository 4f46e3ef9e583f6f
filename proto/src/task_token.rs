//! Per-task tokens: the scheduler signs each task it launches (query, stage, task, expiry) and
//! each task output a reader may fetch, with an Ed25519 key only it holds; executors verify with
//! its public key, which they get when they register. The cluster secret alone therefore neither
//! runs a plan nor reads any task's output: those need a token for exactly that task.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::generated::{TaskToken, TaskTokenClaims};
use crate::ids::{QueryId, StageId, TaskId};

/// How long a token is valid: longer than any query should run.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPurpose {
    Run = 1,
    /// Reading a task's output, by a cluster member (a stage reader).
    Read = 2,
    /// Reading a task's output by a client, from a result endpoint (no cluster credential).
    ClientRead = 3,
}

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no task token")]
    Missing,
    #[error("the task token is malformed")]
    Malformed,
    #[error("the task token is not signed by this cluster's scheduler")]
    BadSignature,
    #[error("the task token is for another purpose")]
    WrongPurpose,
    #[error("the task token is for another task")]
    OtherTask,
    #[error("the task token has expired")]
    Expired,
    #[error("this executor has no scheduler key yet (it has not registered)")]
    NoKey,
}

impl From<TokenError> for tonic::Status {
    fn from(error: TokenError) -> Self {
        tonic::Status::permission_denied(error.to_string())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The scheduler's signing key. `Debug` shows only the public key's length.
pub struct TaskSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for TaskSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSigner").finish_non_exhaustive()
    }
}

impl TaskSigner {
    /// A fresh key pair (per scheduler process: tokens do not outlive it).
    pub fn generate() -> Result<Self, String> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| e.to_string())?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
        Ok(Self { key })
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// A token for `purpose` on exactly this task, valid for [`TOKEN_LIFETIME`].
    pub fn sign(&self, purpose: TokenPurpose, query: &QueryId, stage: StageId, task: TaskId) -> Vec<u8> {
        self.sign_claims(&TaskTokenClaims {
            purpose: purpose as u32,
            query_id: query.to_string(),
            stage_id: stage.0,
            task_id: task.0,
            expires_unix_ms: now_ms() + TOKEN_LIFETIME.as_millis() as u64,
        })
    }

    /// A token for any claims (tests make expired ones with it).
    pub fn sign_claims(&self, claims: &TaskTokenClaims) -> Vec<u8> {
        let claims = claims.encode_to_vec();
        let signature = self.key.sign(&claims).as_ref().to_vec();
        TaskToken { claims, signature }.encode_to_vec()
    }
}

/// Checks tokens against the scheduler's public key.
#[derive(Clone, Debug)]
pub struct TaskVerifier {
    public_key: Vec<u8>,
}

impl TaskVerifier {
    pub fn new(public_key: Vec<u8>) -> Self {
        Self { public_key }
    }

    /// `Ok` if `token` is the scheduler's, for `purpose` on exactly this task, and not expired.
    pub fn verify(
        &self,
        token: &[u8],
        purpose: TokenPurpose,
        query: &str,
        stage: u32,
        task: u32,
    ) -> Result<(), TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let token = TaskToken::decode(token).map_err(|_| TokenError::Malformed)?;
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(&token.claims, &token.signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims = TaskTokenClaims::decode(token.claims.as_slice()).map_err(|_| TokenError::Malformed)?;
        if claims.purpose != purpose as u32 {
            return Err(TokenError::WrongPurpose);
        }
        if claims.query_id != query || claims.stage_id != stage || claims.task_id != task {
            return Err(TokenError::OtherTask);
        }
        if claims.expires_unix_ms <= now_ms() {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_schedulers_tokens_for_that_task_and_purpose_pass() {
        let signer = TaskSigner::generate().unwrap();
        let verifier = TaskVerifier::new(signer.public_key());
        let query = QueryId::from("q1".to_string());
        let run = signer.sign(TokenPurpose::Run, &query, StageId(1), TaskId(2));
        assert_eq!(verifier.verify(&run, TokenPurpose::Run, "q1", 1, 2), Ok(()));
        assert_eq!(verifier.verify(&run, TokenPurpose::Read, "q1", 1, 2), Err(TokenError::WrongPurpose));
        assert_eq!(verifier.verify(&run, TokenPurpose::Run, "q1", 1, 3), Err(TokenError::OtherTask));
        assert_eq!(verifier.verify(&run, TokenPurpose::Run, "q2", 1, 2), Err(TokenError::OtherTask));
        assert_eq!(verifier.verify(&[], TokenPurpose::Run, "q1", 1, 2), Err(TokenError::Missing));
        assert_eq!(verifier.verify(b"garbage", TokenPurpose::Run, "q1", 1, 2), Err(TokenError::Malformed));
        let forger = TaskSigner::generate().unwrap();
        let forged = forger.sign(TokenPurpose::Run, &query, StageId(1), TaskId(2));
        assert_eq!(verifier.verify(&forged, TokenPurpose::Run, "q1", 1, 2), Err(TokenError::BadSignature));
        let expired = signer.sign_claims(&TaskTokenClaims {
            purpose: TokenPurpose::Run as u32,
            query_id: "q1".into(),
            stage_id: 1,
            task_id: 2,
            expires_unix_ms: now_ms() - 1,
        });
        assert_eq!(verifier.verify(&expired, TokenPurpose::Run, "q1", 1, 2), Err(TokenError::Expired));
        // Claims changed after signing: the signature no longer fits.
        let mut token = TaskToken::decode(run.as_slice()).unwrap();
        let mut claims = TaskTokenClaims::decode(token.claims.as_slice()).unwrap();
        claims.task_id = 3;
        token.claims = claims.encode_to_vec();
        assert_eq!(
            verifier.verify(&token.encode_to_vec(), TokenPurpose::Run, "q1", 1, 3),
            Err(TokenError::BadSignature)
        );
    }
}

//! Ended tenant sessions, held in memory (see `control_plane::ended_sessions`): loaded whole
//! whenever the change listener (re)connects, one tenant's again when its `sessions_ended`
//! notification arrives, and pruned as the sessions they end would have expired anyway. A
//! session check is a map lookup, no query.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::RouterState;

/// One tenant's ended sessions, as unix seconds.
#[derive(Debug, Default)]
pub(super) struct EndedSessions {
    /// Session id → when it would have expired.
    sessions: HashMap<Uuid, i64>,
    /// User id → (sessions issued before this, unix milliseconds, are ended; when the newest
    /// would have expired, unix seconds).
    users: HashMap<i64, (i64, i64)>,
}

pub(super) type EndedByTenant = HashMap<Uuid, Arc<EndedSessions>>;

impl RouterState {
    /// Whether a session of `tenant` (its id, if it has one; its user; when it was issued, unix
    /// milliseconds) was ended before its expiry: signed out, or its user's password reset since.
    pub fn session_ended(
        &self,
        tenant: Uuid,
        session: Option<Uuid>,
        user_id: i64,
        issued_at_ms: u64,
    ) -> bool {
        let Some(ended) = self
            .inner
            .ended_sessions
            .read()
            .ok()
            .and_then(|ended| ended.get(&tenant).cloned())
        else {
            return false;
        };
        let issued_at = i64::try_from(issued_at_ms).unwrap_or(i64::MAX);
        session.is_some_and(|session| ended.sessions.contains_key(&session))
            || ended
                .users
                .get(&user_id)
                .is_some_and(|(before, _)| issued_at < *before)
    }

    /// Reads the ended sessions of `tenant` now, so this router's next request already knows
    /// (the other routers hear of it on the tenant channel).
    pub async fn note_sessions_ended(&self, tenant: Uuid) {
        self.reload_ended_sessions(Some(tenant)).await;
    }

    /// Reads every ended session before this router serves, so a router started after a
    /// sign-out never takes the signed-out session in the moments before its change listener
    /// is up (the listener reads them all again once it listens).
    pub async fn load_ended_sessions(&self) {
        self.reload_ended_sessions(None).await;
    }

    /// Reads the ended sessions of `tenant` (or of every tenant) from the control plane. On
    /// failure what is held is kept.
    pub(super) async fn reload_ended_sessions(&self, tenant: Option<Uuid>) {
        let rows = match self.inner.store.ended_sessions(tenant).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cannot read ended sessions; keeping those known");
                return;
            }
        };
        let mut read = EndedByTenant::new();
        for row in rows {
            let (expires, ended) = (row.expires_at.timestamp(), row.ended_at.timestamp_millis());
            let tenant_sessions = read.entry(row.tenant_id).or_default();
            let sessions = Arc::get_mut(tenant_sessions).expect("not shared yet");
            if let Some(session) = row.session_id {
                sessions.sessions.insert(session, expires);
            }
            if let Some(user) = row.user_id {
                let entry = sessions.users.entry(user).or_insert((ended, expires));
                *entry = (entry.0.max(ended), entry.1.max(expires));
            }
        }
        if let Ok(mut held) = self.inner.ended_sessions.write() {
            match tenant {
                Some(tenant) => {
                    held.remove(&tenant);
                    held.extend(read);
                }
                None => *held = read,
            }
        }
    }

    /// Forgets what has expired on its own.
    pub(super) fn prune_ended_sessions(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        let Ok(mut held) = self.inner.ended_sessions.write() else {
            return;
        };
        let stale = held.values().any(|ended| {
            ended.sessions.values().any(|expires| *expires <= now)
                || ended.users.values().any(|(_, expires)| *expires <= now)
        });
        if !stale {
            return;
        }
        held.retain(|_, ended| {
            let sessions = ended
                .sessions
                .iter()
                .filter(|(_, expires)| **expires > now)
                .map(|(id, expires)| (*id, *expires))
                .collect();
            let users = ended
                .users
                .iter()
                .filter(|(_, (_, expires))| *expires > now)
                .map(|(id, times)| (*id, *times))
                .collect();
            *ended = Arc::new(EndedSessions { sessions, users });
            !(ended.sessions.is_empty() && ended.users.is_empty())
        });
    }
}

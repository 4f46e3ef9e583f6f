//! Result reuse: a query may return the result a previous run of the same SQL wrote (Athena's
//! API, `ResultReuseByAgeConfiguration`), if that run is recent enough and no table the query
//! reads changed since it started.
//!
//! [`Changes`] knows when statements through Glaux last changed each table: a statement that
//! changes anything marks the tables it names when it starts and again when its result is
//! dropped (its write is over); one that names none (DDL on a database, grants) marks
//! everything. What changed before this scheduler started is unknown, so only results of this
//! scheduler's lifetime are reused. Files changed by other programs are not seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::history::epoch_ms;

/// When each table last changed through Glaux.
pub struct Changes {
    inner: Mutex<Known>,
}

struct Known {
    /// `db.t` -> milliseconds since the epoch.
    tables: HashMap<String, i64>,
    /// The last change whose tables are unknown (at first: the scheduler's start).
    everything: i64,
}

impl Changes {
    pub fn new() -> Self {
        Self { inner: Mutex::new(Known { tables: HashMap::new(), everything: epoch_ms(SystemTime::now()) }) }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `objects` (`db.t`) change now; none named: anything may.
    pub fn mark(&self, objects: &[String]) {
        let now = epoch_ms(SystemTime::now());
        let mut known = self.known();
        if objects.is_empty() {
            known.everything = now;
        }
        for object in objects {
            known.tables.insert(object.clone(), now);
        }
    }

    /// The last change of any of `objects` (or of everything).
    pub fn last(&self, objects: &[String]) -> i64 {
        let known = self.known();
        objects.iter().filter_map(|o| known.tables.get(o)).fold(known.everything, |a, b| a.max(*b))
    }
}

/// Marks a changing statement's tables again when it is dropped (its write is over).
pub struct ChangeMark {
    pub changes: Arc<Changes>,
    pub objects: Vec<String>,
}

impl Drop for ChangeMark {
    fn drop(&mut self) {
        self.changes.mark(&self.objects);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_by_the_tables_it_names_or_by_all() {
        let changes = Arc::new(Changes::new());
        let start = changes.last(&[]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(ChangeMark { changes: Arc::clone(&changes), objects: vec!["db.a".into()] });
        let a = changes.last(&["db.a".into()]);
        assert!(a > start);
        assert_eq!(changes.last(&["db.b".into()]), start, "another table did not change");
        std::thread::sleep(std::time::Duration::from_millis(5));
        changes.mark(&[]);
        assert!(changes.last(&["db.b".into()]) > a, "a change naming no table changes every table");
    }
}

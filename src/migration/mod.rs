//! Live migration: the dirty-page log shared with the front-end
//! (SET_LOG_BASE) and postcopy through userfaultfd.

pub mod dirty_log;
pub mod postcopy;

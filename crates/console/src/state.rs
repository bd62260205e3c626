//! What every handler shares.

use std::sync::Arc;

use chrono::TimeDelta;
use releasedesk_store::Store;

use crate::ConsoleConfig;
use crate::password::PasswordChecks;

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Store,
    pub config: Arc<ConsoleConfig>,
    pub passwords: Arc<PasswordChecks>,
}

impl AppState {
    pub fn new(store: Store, config: ConsoleConfig) -> Self {
        Self {
            store,
            passwords: Arc::new(PasswordChecks::new(
                config.password_checks,
                config.password_queue,
            )),
            config: Arc::new(config),
        }
    }

    pub fn idle_timeout(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.idle_timeout).unwrap_or(TimeDelta::minutes(30))
    }

    pub fn absolute_timeout(&self) -> TimeDelta {
        TimeDelta::from_std(self.config.absolute_timeout).unwrap_or(TimeDelta::hours(12))
    }
}

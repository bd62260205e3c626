//! What every handler shares.

use std::sync::Arc;

use chrono::TimeDelta;
use releasedesk_store::Store;

use crate::ConsoleConfig;

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Store,
    pub config: Arc<ConsoleConfig>,
}

impl AppState {
    pub fn new(store: Store, config: ConsoleConfig) -> Self {
        Self {
            store,
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
